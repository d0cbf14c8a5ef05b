package freeport

import (
	"fmt"
	"net"
	"testing"
)

// TestPortsAreDistinct: cmd/shanhai's parts' ports were asked of the kernel one at a
// time, each listener closed before the next was opened, so the kernel could
// hand out one port twice; in CI the gateway and the user service's admin
// listener both got 127.0.0.1:34859 and the user service could not start.
// Asked for many at once, no two may be equal.
func TestPortsAreDistinct(t *testing.T) {
	const n = 2000 // enough that one-at-a-time picks collide (birthday bound over ~28,000 ports)
	ports, err := Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != n {
		t.Fatalf("got %d ports, want %d", len(ports), n)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("port %d given twice or invalid among %d", p, n)
		}
		seen[p] = true
	}
}

// TestPortIsFree: the one port returned can be bound at once.
func TestPortIsFree(t *testing.T) {
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d from Port is not free: %v", p, err)
	}
	l.Close()
}
