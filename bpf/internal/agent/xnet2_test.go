package agent

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestXNetHTTP2StatusUnknown: golang.org/x/net/http2's own server (http2.ConfigureServer, not net/http's bundled
// one) hands its streams to net/http's serverHandler.ServeHTTP with its own ResponseWriter, whose status the probe
// does not read. Its requests are counted with status "unknown"; they used to be counted 200 whatever they answered.
func TestXNetHTTP2StatusUnknown(t *testing.T) {
	requireRoot(t)
	bin := build(t, "testdata/xnet2", "xnet2", false)
	a := newAgent(t, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
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
	want := map[RED]uint64{{PID: tg.pid, Method: "GET", Status: StatusUnknown}: n}
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
