package main

import (
	"bufio"
	"bytes"
	"fmt"
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
		"LOG_LEVEL=warn",
	)

	measure(b, bin, env)
}

func measure(b *testing.B, bin string, env []string) {
	first, _ := startOnce(b, bin, env, false)
	var total time.Duration
	var rss float64
	b.ResetTimer()
	for i := range b.N {
		d, r := startOnce(b, bin, env, i == b.N-1)
		total += d
		if r > 0 {
			rss = r
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ready-ms")
	b.ReportMetric(rss, "idle-rss-MB")
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

// startOnce runs the binary until /readyz answers 200, optionally idles and
// reads VmRSS, then stops it with SIGTERM.
func startOnce(b *testing.B, bin string, env []string, measureRSS bool) (time.Duration, float64) {
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
	var ready time.Duration
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = time.Since(start)
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			b.Fatalf("not ready after 10s: %s", stderr.String())
		}
		time.Sleep(500 * time.Microsecond)
	}
	if !measureRSS {
		return ready, 0
	}
	time.Sleep(time.Second)
	return ready, vmRSS(b, cmd.Process.Pid)
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
