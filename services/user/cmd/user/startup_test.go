package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// BenchmarkStartToReady builds the real binary, then starts it b.N times
// against the local PostgreSQL, Redis and etcd and measures the time from
// exec to the first 200 on /readyz (goal ≤ 30 ms) and the resident memory
// after a second of idling (goal ≤ 15 MB). The first start, which also
// migrates an empty database, is reported separately as first-ms.
//
//	eval "$(scripts/deps.sh env)"; cd services/user && go test -run '^$' -bench StartToReady -benchtime 20x ./cmd/user
func BenchmarkStartToReady(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "user")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build: %v", err)
	}
	b.Run("baseline", func(b *testing.B) { benchBaseline(b) })
	b.Run("user", func(b *testing.B) { benchUser(b, bin) })
}

// benchBaseline measures a standard-library server that answers /readyz at
// once, started the same way: the floor this machine allows right now.
// Comparing against it separates the service's own cost from host load.
func benchBaseline(b *testing.B) {
	dir := b.TempDir()
	src := `package main

import ("net/http"; "os")

func main() {
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	http.ListenAndServe(os.Getenv("HTTP_ADDR"), nil)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "baseline")
	build := exec.Command("go", "build", "-o", bin, filepath.Join(dir, "main.go"))
	build.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=off")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build baseline: %v", err)
	}
	measure(b, bin, os.Environ())
}

func benchUser(b *testing.B, bin string) {
	env := append(os.Environ(),
		"DATABASE_URL="+testenv.Postgres(b),
		"REDIS_URL="+testenv.Redis(b),
		"ETCD_ENDPOINTS="+strings.Join(testenv.Etcd(b), ","),
		"ADMIN_ADDR=127.0.0.1:0",
		"AUTH_DEV_KEYS=true",
		"LOG_LEVEL=info",
	)

	measure(b, bin, env)
}

func measure(b *testing.B, bin string, env []string) {
	first := startOnce(b, bin, env, false)
	var sum startRun
	b.ResetTimer()
	for i := range b.N {
		r := startOnce(b, bin, env, i == b.N-1)
		sum.ready += r.ready
		sum.cpu += r.cpu
		sum.wait += r.wait
		if r.rssMB > 0 {
			sum.rssMB = r.rssMB
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(float64(first.ready.Microseconds())/1000, "first-ms")
	b.ReportMetric(ms(sum.ready), "ready-ms")
	b.ReportMetric(ms(sum.cpu), "cpu-ms")
	b.ReportMetric(ms(sum.wait), "runq-wait-ms")
	b.ReportMetric(sum.rssMB, "idle-rss-MB")
	b.ReportMetric(0, "ns/op")
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRun is one start: wall time to ready, the CPU the process had used by
// then and the time its threads waited for a CPU (from schedstat; on a
// shared, loaded host the wait explains most of the wall time), and the
// idle RSS when measured.
type startRun struct {
	ready, cpu, wait time.Duration
	rssMB            float64
}

// startOnce runs the binary until /readyz answers 200, optionally idles and
// reads VmRSS, then stops it with SIGTERM.
func startOnce(b *testing.B, bin string, env []string, measureRSS bool) startRun {
	addr := freeAddr(b)
	cmd := exec.Command(bin)
	cmd.Env = append(env, "HTTP_ADDR="+addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var r startRun
	last := "no answer"
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			if resp.StatusCode == http.StatusOK {
				r.ready = time.Since(start)
				r.cpu, r.wait = schedstat(cmd.Process.Pid)
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			b.Fatalf("not ready after 10s (last /readyz: %s): %s", last, stderr.String())
		}
		time.Sleep(500 * time.Microsecond)
	}
	if measureRSS {
		time.Sleep(time.Second)
		r.rssMB = vmRSS(b, cmd.Process.Pid)
	}
	return r
}

// schedstat sums on-CPU and run-queue time over the process's threads
// (/proc/<pid>/task/*/schedstat: "<ns on cpu> <ns waiting> <slices>").
func schedstat(pid int) (cpu, wait time.Duration) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		on, _ := strconv.ParseInt(f[0], 10, 64)
		w, _ := strconv.ParseInt(f[1], 10, 64)
		cpu += time.Duration(on)
		wait += time.Duration(w)
	}
	return cpu, wait
}

func vmRSS(b *testing.B, pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
