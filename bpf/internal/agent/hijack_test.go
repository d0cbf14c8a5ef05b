package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A handler that takes its connection over (a WebSocket upgrade, a CONNECT tunnel) returns from ServeHTTP when the
// session ends and writes no status through the response, so it was counted as a 200 lasting the whole session
// (found by review). It must be kept out of the request-duration histogram and exported as hijacked, whether the
// hijacker writes its 101 on the raw connection or calls WriteHeader(101) first; plain requests are unchanged. A
// CONNECT proxy's WriteHeader(200) before Hijack was still a 200 lasting the session (found by review: the flag was
// read for status 0 and 101 only); serve_http_hijack marks it. Stripped, the offsets of the response's conn and the
// conn's hijacked flag come from the fallback table.
func TestServerHijackedIsNotA200(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			requireRoot(t)
			bin := buildTarget(t, stripped)
			a := newAgent(t, bin)
			a.Scan()
			tg := startTarget(t, bin)
			a.Scan()
			const session = 150 * time.Millisecond
			for range 3 {
				tg.upgrade(t, fmt.Sprintf("/hijack?ms=%d", session.Milliseconds()), 101)
				tg.upgrade(t, fmt.Sprintf("/hijack?ms=%d&header=1", session.Milliseconds()), 101)
				tg.upgrade(t, fmt.Sprintf("/hijack?ms=%d&header=200", session.Milliseconds()), 200)
			}
			c := &http.Client{}
			for range 5 {
				tg.get(t, c, "GET", "/work")
			}
			eventually(t, func() (bool, string) {
				got, err := serverByStatus(a, tg.pid)
				if err != nil {
					return false, err.Error()
				}
				return len(got) == 2 && got[200] == 5 && got[StatusHijacked] == 9,
					fmt.Sprintf("requests by status %v, want 5 of 200 and 9 hijacked (status %d)", got, StatusHijacked)
			})
			s, err := a.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			h := s.Server[RED{PID: tg.pid, Method: "GET", Status: StatusHijacked}]
			if q := h.Quantile(0.01); q < session*7/8 {
				t.Errorf("hijacked sessions' shortest %v, want the session's %v or more", q, session)
			}

			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(a.Collector())
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]uint64{}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					labels := []string{mf.GetName()}
					for _, l := range m.GetLabel() {
						if l.GetName() == "status" || l.GetName() == "method" {
							labels = append(labels, l.GetName()+"="+l.GetValue())
						}
					}
					if m.GetHistogram() != nil {
						counts[strings.Join(labels, " ")] += m.GetHistogram().GetSampleCount()
					}
				}
			}
			want := map[string]uint64{
				"shanhai_bpf_http_server_request_duration_seconds method=GET status=200": 5,
				"shanhai_bpf_http_server_hijacked_duration_seconds method=GET":           9,
			}
			for k, n := range counts {
				if strings.HasPrefix(k, "shanhai_bpf_http_server_") && want[k] != n {
					t.Errorf("%s: %d, want %d (all: %v)", k, n, want[k], counts)
				}
			}
			for k, n := range want {
				if counts[k] != n {
					t.Errorf("%s: %d, want %d", k, counts[k], n)
				}
			}
		})
	}
}

// upgrade asks the target for path as a protocol upgrade on a connection of its own, wants the answer status, and
// waits for the target to end the session (close the connection).
func (tg *target) upgrade(t *testing.T, path string, status int) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(tg.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: target\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, fmt.Sprintf("HTTP/1.1 %d ", status)) {
		t.Fatalf("GET %s: answer %q, %v; want %d", path, line, err, status)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("GET %s: session: %v", path, err)
	}
}

// A handler that panics never returns from ServeHTTP: net/http recovers the panic in conn.serve and closes the
// connection, and the request was not counted at all (its slot stayed taken too). It must be counted with status 0
// (no response), for a plain panic and for http.ErrAbortHandler alike, and the requests after it as before.
func TestServerHandlerPanicIsCounted(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			requireRoot(t)
			bin := buildTarget(t, stripped)
			a := newAgent(t, bin)
			a.Scan()
			tg := startTarget(t, bin)
			a.Scan()
			for _, path := range []string{"/panic?abort=1", "/panic?abort=1", "/panic?abort=1", "/panic"} {
				tg.unanswered(t, path)
			}
			c := &http.Client{}
			for range 5 {
				tg.get(t, c, "GET", "/work")
			}
			eventually(t, func() (bool, string) {
				got, err := serverByStatus(a, tg.pid)
				if err != nil {
					return false, err.Error()
				}
				return len(got) == 2 && got[200] == 5 && got[0] == 4,
					fmt.Sprintf("requests by status %v, want 5 of 200 and 4 of 0 (the handler panicked)", got)
			})
		})
	}
}

// unanswered sends GET path on a connection of its own and wants it closed without an answer.
func (tg *target) unanswered(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(tg.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: target\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("GET %s: got %q, %v; want the connection closed without an answer", path, b, err)
	}
}

// Over HTTP/2 the ResponseWriter serverHandler.ServeHTTP gets is net/http's http2responseWriter, not a *response, and
// reading its memory at the response's offsets found no status (200) and then, taking its first word for a *conn,
// a "hijacked" flag in whatever lay there, so HTTP/2 requests were randomly counted as hijacked (found by review;
// map[1:1 200:4] in 5 of 6 runs). The status and hijacked reads are made only for the *response's itab: HTTP/2
// requests are counted as 200 (their status is not read, as the README says), never hijacked, and HTTP/1 requests
// on the same server keep their real status. Stripped, the itab is found the same way (symtab.ArgAddr); in a PIE
// target it sits elsewhere in every process, which the comparison relative to the probe's address absorbs.
func TestServerHTTP2IsNeverHijacked(t *testing.T) {
	for _, variant := range []string{"plain", "stripped", "pie"} {
		t.Run(variant, func(t *testing.T) {
			requireRoot(t)
			bin := buildTarget(t, variant == "stripped")
			if variant == "pie" {
				bin = buildPIETarget(t)
			}
			a := newAgent(t, bin)
			a.Scan()
			tg := startTarget(t, bin, "H2C=1")
			a.Scan()
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			h2 := &http.Client{Transport: tr}
			defer tr.CloseIdleConnections()
			for range 20 {
				resp, err := h2.Get(tg.base + "/work")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
					t.Fatalf("answered %s %s, want HTTP/2 200", resp.Proto, resp.Status)
				}
			}
			c := &http.Client{}
			for range 3 {
				tg.get(t, c, "GET", "/work?status=404")
			}
			eventually(t, func() (bool, string) {
				got, err := serverByStatus(a, tg.pid)
				if err != nil {
					return false, err.Error()
				}
				return len(got) == 2 && got[200] == 20 && got[404] == 3,
					fmt.Sprintf("requests by status %v, want 20 of 200 (HTTP/2) and 3 of 404 (HTTP/1), none hijacked", got)
			})
		})
	}
}

// buildPIETarget compiles testdata/target as a position-independent executable (once).
func buildPIETarget(t *testing.T) string {
	t.Helper()
	out := filepath.Join(binDir, "target-pie")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	cmd := exec.Command("go", "build", "-buildmode=pie", "-o", out, "../../testdata/target")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=pie: %v\n%s", err, b)
	}
	return out
}

// serverByStatus counts the HTTP server requests of pid the agent has recorded, by status.
func serverByStatus(a *Agent, pid int) (map[int]uint64, error) {
	s, err := a.Snapshot()
	if err != nil {
		return nil, err
	}
	got := map[int]uint64{}
	for k, h := range s.Server {
		if k.PID == pid {
			got[k.Status] += h.Count
		}
	}
	return got, nil
}
