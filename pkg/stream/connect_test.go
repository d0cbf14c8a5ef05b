package stream_test

import (
	"context"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func TestConnect(t *testing.T) {
	nc, js, closeNATS, err := stream.Connect(testenv.NATS(t), "connect-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatalf("JetStream on the connection: %v", err)
	}
	if err := closeNATS(); err != nil || !nc.IsClosed() {
		t.Fatalf("close: %v, closed %v", err, nc.IsClosed())
	}
	if _, _, closeNATS, err := stream.Connect("nats://127.0.0.1:1", "connect-test"); err == nil || closeNATS != nil {
		t.Fatalf("unreachable server: err %v, close %v; want an error and nothing to close", err, closeNATS != nil)
	}
}
