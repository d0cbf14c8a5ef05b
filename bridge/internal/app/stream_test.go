package app

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// The bridge, order and payment each create the stream when it is absent,
// and whoever starts first defines it: the bridge's stream must keep
// messages by the same limits as the services' (stream.Ensure), or a
// platform whose bridge started first kept every event for ever, until
// JetStream's store was full and refused the saga's publishes.
func TestBridgeCreatesTheStreamTheServicesWould(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := time.Now().UnixNano()
	byBridge, byServices := fmt.Sprintf("BRIDGESTREAM%d", id), fmt.Sprintf("SVCSTREAM%d", id)
	cfg := config.Config{Stream: byBridge, StreamSubjects: []string{fmt.Sprintf("bst%d.>", id)}, DuplicateWindow: 2 * time.Minute}
	if err := EnsureStream(ctx, js, cfg, slog.Default()); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, js, stream.Names{Stream: byServices, StreamSubjects: fmt.Sprintf("sst%d.>", id)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{byBridge, byServices} {
		t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	}
	b, err := js.Stream(ctx, byBridge)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, byServices)
	if err != nil {
		t.Fatal(err)
	}
	bc, sc := b.CachedInfo().Config, s.CachedInfo().Config
	if bc.MaxAge != sc.MaxAge || bc.MaxBytes != sc.MaxBytes || bc.MaxMsgs != sc.MaxMsgs ||
		bc.Retention != sc.Retention || bc.Storage != sc.Storage || bc.Duplicates != sc.Duplicates {
		t.Errorf("the bridge's stream keeps messages by other limits than the services':\n"+
			"bridge:   max age %v, bytes %d, msgs %d, retention %v, storage %v, duplicates %v\n"+
			"services: max age %v, bytes %d, msgs %d, retention %v, storage %v, duplicates %v",
			bc.MaxAge, bc.MaxBytes, bc.MaxMsgs, bc.Retention, bc.Storage, bc.Duplicates,
			sc.MaxAge, sc.MaxBytes, sc.MaxMsgs, sc.Retention, sc.Storage, sc.Duplicates)
	}
}
