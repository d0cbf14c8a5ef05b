package agent

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestXNetHTTP2Status: golang.org/x/net/http2's own server (http2.ConfigureServer, not net/http's bundled one)
// hands its streams to net/http's serverHandler.ServeHTTP with its own ResponseWriter. Its status is read through
// the writer's state where the executable has DWARF; stripped, there are no offsets for it, and its requests are
// counted with status "unknown". They used to be counted 200 whatever they answered.
func TestXNetHTTP2Status(t *testing.T) {
	t.Parallel()
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) {
			want := 404
			if stripped {
				want = StatusUnknown
			}
			testXNetHTTP2Status(t, stripped, want)
		})
	}
}

func testXNetHTTP2Status(t *testing.T, stripped bool, status int) {
	requireRoot(t)
	name := "xnet2"
	if stripped {
		name = "xnet2-stripped"
	}
	bin := build(t, "testdata/xnet2", name, stripped)
	var logs bytes.Buffer
	a, err := New(Config{Targets: []string{bin}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	if said := strings.Contains(logs.String(), "golang.org/x/net/http2 server requests are counted with status unknown"); said != stripped {
		t.Errorf("the log says x/net's statuses are not read: %v, want %v\n%s", said, stripped, logs.String())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	const n = 5
	for range n {
		resp, err := c.Get("https://" + strings.TrimPrefix(tg.base, "http://") + "/status?code=404")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("got %s %d, want HTTP/2 404", resp.Proto, resp.StatusCode)
		}
	}
	want := map[RED]uint64{{PID: tg.pid, Method: "GET", Status: status}: n}
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		got := map[RED]uint64{}
		for k, h := range s.Server {
			if k.PID == tg.pid {
				got[k] = h.Count
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("series of pid %d: %v, want %v", tg.pid, got, want)
	})
	if status, class := statusLabels(StatusUnknown); status != "unknown" || class != "unknown" {
		t.Errorf("labels of StatusUnknown: status=%q status_class=%q, want unknown and unknown", status, class)
	}
	if status, class := statusLabels(404); status != "404" || class != "4xx" {
		t.Errorf("labels of 404: status=%q status_class=%q", status, class)
	}
}
