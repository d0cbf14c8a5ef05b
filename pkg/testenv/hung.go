package testenv

import (
	"net"
	"sync"
	"testing"
)

// Hung returns the address of a loopback listener that accepts every
// connection and never writes a byte, until the test ends: a paused Redis,
// or a load balancer in front of a dead one. Unlike a closed port, a client
// meets no error, only its own timeouts (or none).
func Hung(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
