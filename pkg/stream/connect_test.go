package stream_test

import (
	"context"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func TestConnect(t *testing.T) {
	nc, js, closeNATS, err := stream.Connect(testenv.NATS(t), "connect-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatalf("JetStream on the connection: %v", err)
	}
	if err := closeNATS(); err != nil || !nc.IsClosed() {
		t.Fatalf("close: %v, closed %v", err, nc.IsClosed())
	}
	if _, _, closeNATS, err := stream.Connect("nats://127.0.0.1:1", "connect-test", nil); err == nil || closeNATS != nil {
		t.Fatalf("unreachable server: err %v, close %v; want an error and nothing to close", err, closeNATS != nil)
	}
}

// The services fail their start with Connect's error: it lands in logs and
// terminals, so it must not carry NATS_URL's password, whether the server is
// away or the URL does not parse (url.Parse's error quotes it whole).
func TestConnectErrorShowsNoPassword(t *testing.T) {
	for _, raw := range []string{"nats://bob:s3cret@127.0.0.1:1", "nats://bob:s3cr%zzet@127.0.0.1:1"} {
		_, _, _, err := stream.Connect(raw, "connect-test", nil)
		if err == nil || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("Connect(%q): %v; want an error without the password", raw, err)
		}
	}
}
