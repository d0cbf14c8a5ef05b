package app_test

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestBridgeStartedBeforeNATSWaitsForIt: 66b23b1 made a stream JetStream refuses (subjects another stream holds) a
// start failure. NATS not answering yet is no such refusal: a bridge started before NATS (compose, a node's pods in
// any order) must keep trying, not ready meanwhile, then create its stream and carry once NATS answers.
func TestBridgeStartedBeforeNATSWaitsForIt(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := awayAddr(t) // NATS as the bridge sees it: nothing listens there until the test serves on it
	b := startBridge(t, map[string]string{"NATS_URL": "nats://" + addr})
	// Not synchronisation: the span in which the bridge meets a NATS that does not answer (a refusal stops it at once,
	// and its HTTP server with it).
	time.Sleep(3 * time.Second)
	if code, body := b.readyz(t); code != 503 || !strings.Contains(body, "nats") {
		t.Fatalf("/readyz with NATS not answering: %d %s, want 503 naming nats", code, body)
	}

	serveOn(t, addr, func(ln net.Listener) error { return proxyTCP(ln, u.Host) })
	b.produce(t, 0, 5)
	b.waitCarried(t, 5)
	if log := b.log.String(); strings.Contains(log, "refusing to start") {
		t.Errorf("a NATS that did not answer yet was taken for a refusal: %s", log)
	}
}
