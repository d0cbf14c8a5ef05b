package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestCallProbes runs testdata/clients against the real PostgreSQL, Redis, Kafka, NATS and Pulsar (and a test HTTP server)
// and checks that the agent counted exactly the calls and failures the program itself counted, per operation, on
// an unstripped binary (DWARF offsets and result layouts) and a stripped one (the fallback tables).
func TestCallProbes(t *testing.T) { testCallProbes(t, Config{}) }

// testCallProbes runs the check with agents of cfg's settings.
func testCallProbes(t *testing.T, cfg Config) {
	requireRoot(t)
	env := []string{
		"DATABASE_URL=" + testenv.Postgres(t),
		"REDIS_URL=" + testenv.Redis(t),
		"KAFKA_BROKERS=" + strings.Join(testenv.Kafka(t), ","),
		"NATS_URL=" + testenv.NATS(t),
	}
	pulsarURL, _ := testenv.Pulsar(t)
	env = append(env, "PULSAR_URL="+pulsarURL)
	server := startTarget(t, buildTarget(t, false)) // not a target of the agent: only the clients are
	// The third run gives the probes one-entry slot tables (slotEntries), so that nearly every call and series takes
	// the hash-map fallback: both paths must count exactly. The fourth probes a position-independent, stripped
	// build with -trimpath (no DWARF, code addresses in relocations: every exit on a RET). They run at once, each on
	// its own copy of the binary, so that its agent sees its own clients process only.
	for _, c := range []struct{ stripped, fallback, pie bool }{{false, false, false}, {true, false, false}, {false, true, false}, {true, false, true}} {
		stripped := c.stripped
		t.Run(fmt.Sprintf("stripped=%v,fallback=%v,pie=%v", stripped, c.fallback, c.pie), func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			if c.fallback {
				cfg.slotEntries = 1
			}
			name := "clients"
			if stripped {
				name += "-stripped"
			}
			var bin string
			if c.pie {
				name += "-pie-trimpath"
				bin = buildOnce(t, name, append(os.Environ(), "CGO_ENABLED=0"), "build", "-buildmode=pie", "-trimpath",
					"-ldflags=-s -w", "-o", filepath.Join(binDir, name), "../../testdata/clients")
			} else {
				bin = build(t, "testdata/clients", name, stripped)
			}
			bin = ownCopy(t, bin)
			a := newAgentWith(t, cfg, bin)
			a.Scan()
			const n = 20
			cmd := exec.Command(bin, "-n", strconv.Itoa(n), "-http", server.base+"/work")
			cmd.Env = append(os.Environ(), env...)
			cmd.Stderr = os.Stderr
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("clients printed no counts: %v", err)
			}
			var own map[string]uint64
			if err := json.Unmarshal([]byte(line), &own); err != nil {
				t.Fatal(err)
			}
			t.Logf("clients counted %v", own)
			a.Scan()
			ts := a.Targets()
			if len(ts) != 1 || strings.Join(ts[0].Probes, ",") != "goruntime,httpclient,db,messaging" {
				t.Fatalf("targets %+v: want every probe on the clients binary", ts)
			}
			pid := cmd.Process.Pid
			eventually(t, func() (bool, string) {
				s, err := a.Snapshot()
				if err != nil {
					return false, err.Error()
				}
				got := map[string]uint64{}
				for k, h := range s.Calls {
					if k.PID != pid {
						continue
					}
					op := map[string]string{"http": "http", "sql": "sql " + k.Operation, "redis": "redis", "kafka": "kafka", "nats": "nats", "pulsar": "pulsar"}[k.System]
					if k.System == "redis" && k.Operation != "process" {
						op += " " + k.Operation
					}
					got[op] += h.Count
					if k.Error {
						got[op+" error"] += h.Count
					}
					if k.System == "http" && !k.Error {
						got["http "+strconv.Itoa(k.Status)] += h.Count
						if k.Method != "GET" {
							return false, "http client method " + k.Method
						}
					}
				}
				return fmt.Sprint(got) == fmt.Sprint(own), fmt.Sprintf("agent %v\nclient %v", got, own)
			})
		})
	}
}
