package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// TestBridgeMetersIntoTheProviderItIsGiven: a bridge hosted as a part (cmd/shanhai) meters into the host's telemetry
// provider, whichever provider the otel globals hold by then. Here another Setup came after the host's, as the bridges
// the other tests start side by side do all the time: the bridge's counters must still be on the /metrics its server
// serves from the host's registry, and every test's bridge asserts on its own counters.
func TestBridgeMetersIntoTheProviderItIsGiven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	host, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "host"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Shutdown(ctx) })
	later, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "later"}) // now the otel globals
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = later.Shutdown(ctx) })

	b := startBridgeIn(t, nil, server.Part{Telemetry: host})
	const n = 30
	b.produce(t, 0, n)
	const carried = `bridge_messages_total{`
	for deadline := time.Now().Add(time.Minute); b.metric(t, carried) < n; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v on the host's /metrics a minute after %d records were produced, want >= %d (metered elsewhere?)",
				carried, b.metric(t, carried), n, n)
		}
	}
}
