package testenv

import (
	"net"
	"testing"
)

// ClosedPort returns a loopback address nothing listens on, a server that is
// down: a connection to it is refused at once (ECONNREFUSED), where Hung's is
// accepted and never answered. The port was free a moment ago and the kernel
// hands out ephemeral ports in turn, so another process taking it before the
// test dials is possible but unlikely.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// Refused returns the error of a dial to ClosedPort: what a client library
// wraps when its server is down (a database pool's connect error, for one),
// for tests of how callers answer an outage.
func Refused(t testing.TB) error {
	t.Helper()
	conn, err := net.Dial("tcp", ClosedPort(t))
	if err == nil {
		conn.Close()
		t.Fatal("a dial to a closed port succeeded")
	}
	return err
}
