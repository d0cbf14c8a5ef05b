package discovery

import (
	"net"
	"testing"
)

func TestAdvertiseAddr(t *testing.T) {
	ln := &net.TCPAddr{IP: net.IPv6zero, Port: 41234}
	if got := AdvertiseAddr("", ln); got != "127.0.0.1:41234" {
		t.Errorf("unconfigured: %q, want loopback with the listener's port", got)
	}
	if got := AdvertiseAddr("order-7:8082", ln); got != "order-7:8082" {
		t.Errorf("configured: %q, want it unchanged", got)
	}
}
