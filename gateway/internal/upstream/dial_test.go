package upstream

import (
	"net"
	"testing"
)

// fasthttp dials with a timeout of 0 when it dials for a request waiting
// on MaxConns after a busy connection closed (HostClient.dialConnFor): no
// timeout given, not one already over. dial refused it at once
// (fasthttp.ErrDialTimeout), and the waiting request got a 502.
func TestDialWithoutTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dial(ln.Addr().String(), 0)
	if err != nil {
		t.Fatalf("dial with no timeout given: %v", err)
	}
	c.Close()
}
