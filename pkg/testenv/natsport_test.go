package testenv_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// nats.go dials a server given without a port at NATS's default port,
// 4222. testenv.NATS dialled such a NATS_URL at the bare host, which no
// dial takes ("missing port in address"), so it failed with a NATS
// answering where nats.go would connect.
func TestNATSURLWithoutPortIsCheckedAtTheDefaultPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:4222")
	switch {
	case err == nil:
		t.Cleanup(func() { _ = ln.Close() })
	case errors.Is(err, syscall.EADDRINUSE):
		// Something listens there already (a developer's NATS): it answers the check all the same.
	default:
		t.Fatalf("listen at NATS's default port: %v", err)
	}
	for _, value := range []string{"nats://127.0.0.1", "127.0.0.1", "nats://bob:pw@127.0.0.1", "nats://127.0.0.1:1,nats://127.0.0.1"} {
		t.Run(value, func(t *testing.T) {
			t.Setenv("NATS_URL", value)
			if msg := testenv.Failure(t, func(tb testing.TB) {
				if got := testenv.NATS(tb); got != value {
					tb.Fatalf("NATS() = %q, want NATS_URL as it is", got)
				}
			}); msg != "" {
				t.Errorf("NATS_URL=%s with a server at 127.0.0.1:4222: %s", value, msg)
			}
		})
	}
}
