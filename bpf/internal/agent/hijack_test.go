package agent

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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
	t.Parallel()
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			requireRoot(t)
			bin := ownCopy(t, buildTarget(t, stripped))
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
	t.Parallel()
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			requireRoot(t)
			bin := ownCopy(t, buildTarget(t, stripped))
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

// Over HTTP/2 a handler's panic is recovered in the HTTP/2 server's handler runner, not in conn.serve, so those
// requests were still not counted at all (README: "HTTP/1 only"; map[200:5] here) and their in-flight slot stayed
// taken. The runner's deferred function calls writeFrameFromHandler only for them (the RST_STREAM): they must be
// counted with status 0 (no response), as over HTTP/1.
func TestServerHTTP2HandlerPanicIsCounted(t *testing.T) {
	t.Parallel()
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			requireRoot(t)
			bin := ownCopy(t, buildTarget(t, stripped))
			a := newAgent(t, bin)
			a.Scan()
			tg := startTarget(t, bin, "H2C=1")
			a.Scan()
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			defer tr.CloseIdleConnections()
			h2 := &http.Client{Transport: tr}
			for _, path := range []string{"/panic?abort=1", "/panic?abort=1", "/panic?abort=1", "/panic"} {
				if resp, err := h2.Get(tg.base + path); err == nil {
					resp.Body.Close()
					t.Fatalf("GET %s answered %s, want the stream reset", path, resp.Status)
				}
			}
			for range 5 {
				resp, err := h2.Get(tg.base + "/work")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
				}
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
// map[1:1 200:4] in 5 of 6 runs). The status and hijacked reads are made only for the *response's itab, and HTTP/1
// requests on the same server keep their real status. HTTP/2 requests were then all counted as 200, whatever they
// answered (map[200:24 404:3] for 17 200s, 4 404s and 3 500s over HTTP/2): their status is read through the
// http2responseWriter's state when its itab (found in the code that converts it, (*http2serverConn).runHandler) is
// known, and a handler that wrote nothing is the 200 net/http sends. Stripped, both itabs are found in the code and
// the offsets come from the fallback table; in a PIE target the itabs sit elsewhere in every process, which the
// comparison relative to the probe's address absorbs.
func TestServerHTTP2IsNeverHijacked(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{"plain", "stripped", "pie", "tls"} {
		t.Run(variant, func(t *testing.T) {
			requireRoot(t)
			bin := buildTarget(t, variant == "stripped")
			if variant == "pie" {
				bin = buildTargetWith(t, "target-pie", "-buildmode=pie")
			}
			bin = ownCopy(t, bin)
			a := newAgent(t, bin)
			a.Scan()
			// h2c (HTTP/2 without TLS, by prior knowledge), or with tls HTTPS, where ALPN picks HTTP/2 or HTTP/1.1.
			env, base := "H2C=1", ""
			h2, h1 := &http.Transport{Protocols: new(http.Protocols)}, &http.Transport{}
			h2.Protocols.SetUnencryptedHTTP2(true)
			if variant == "tls" {
				env, base = "TLS=1", "https://"
				h2.Protocols.SetHTTP2(true)
				h1.Protocols = new(http.Protocols)
				h1.Protocols.SetHTTP1(true)
				// The target's throw-away certificate; one config each: a Transport adds its protocols to its own.
				h1.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
				h2.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
			}
			defer h2.CloseIdleConnections()
			defer h1.CloseIdleConnections()
			tg := startTarget(t, bin, env)
			if base != "" {
				tg.base = base + strings.TrimPrefix(tg.base, "http://")
			}
			a.Scan()
			// /spawn writes nothing: net/http answers 200 when the handler returns.
			for path, n := range map[string]int{"/work": 15, "/work?status=404": 4, "/work?status=500": 3, "/spawn": 2} {
				want := max(map[string]int{"/work?status=404": 404, "/work?status=500": 500}[path], 200)
				for range n {
					resp, err := (&http.Client{Transport: h2}).Get(tg.base + path)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.ProtoMajor != 2 || resp.StatusCode != want {
						t.Fatalf("%s answered %s %s, want HTTP/2 %d", path, resp.Proto, resp.Status, want)
					}
				}
			}
			for range 3 {
				tg.get(t, &http.Client{Transport: h1}, "GET", "/work?status=404")
			}
			eventually(t, func() (bool, string) {
				got, err := serverByStatus(a, tg.pid)
				if err != nil {
					return false, err.Error()
				}
				return len(got) == 3 && got[200] == 17 && got[404] == 7 && got[500] == 3,
					fmt.Sprintf("requests by status %v, want 17 of 200, 4 of 404 and 3 of 500 (HTTP/2) and 3 of 404 (HTTP/1), none hijacked", got)
			})
		})
	}
}

// A net/http built without HTTP/2 (-tags nethttpomithttp2) and stripped has neither the HTTP/2 writer's itab symbol
// nor runHandler to find it in: the agent must say so in its log and keep reading HTTP/1 statuses as before.
func TestServerWithoutHTTP2WriterSaysSo(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := buildTargetWith(t, "target-noh2", "-tags=nethttpomithttp2", "-ldflags=-s -w")
	var logs bytes.Buffer
	a, err := New(Config{Targets: []string{bin}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	if !strings.Contains(logs.String(), "HTTP/2 requests are counted with status unknown") {
		t.Errorf("the log does not say HTTP/2 statuses are not read:\n%s", logs.String())
	}
	c := &http.Client{}
	for _, path := range []string{"/work", "/work?status=404", "/work?status=500"} {
		tg.get(t, c, "GET", path)
	}
	eventually(t, func() (bool, string) {
		got, err := serverByStatus(a, tg.pid)
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 3 && got[200] == 1 && got[404] == 1 && got[500] == 1,
			fmt.Sprintf("requests by status %v, want one each of 200, 404 and 500", got)
	})
}

// buildTargetWith compiles testdata/target with go build's flags as name (once).
func buildTargetWith(t *testing.T, name string, flags ...string) string {
	t.Helper()
	return buildOnce(t, name, os.Environ(), append(append([]string{"build"}, flags...), "-o", filepath.Join(binDir, name), "../../testdata/target")...)
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
