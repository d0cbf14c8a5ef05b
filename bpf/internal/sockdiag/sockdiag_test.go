package sockdiag

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAliveFollowsAConnection: both ends of a loopback connection are in the dump and alive while open, and not
// alive once closed: the end that closed first becomes a time-wait mini socket (reported in FIN_WAIT2 or
// TIME_WAIT), the other passes LAST_ACK to CLOSE.
func TestAliveFollowsAConnection(t *testing.T) {
	for _, loopback := range []string{"127.0.0.1", "::1"} {
		t.Run(loopback, func(t *testing.T) {
			ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			ids := []ID{idOf(t, client), idOf(t, server)}
			live, err := Dump(ids[0].Family)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if !live[id] {
					t.Errorf("%+v: not in the dump of %d connections", id, len(live))
				}
				if alive, err := Alive(id); err != nil || !alive {
					t.Errorf("%+v open: Alive = %v, %v", id, alive, err)
				}
			}
			client.Close()
			server.Close()
			for _, id := range ids {
				deadline := time.Now().Add(5 * time.Second)
				for {
					alive, err := Alive(id)
					if err != nil {
						t.Fatal(err)
					}
					if !alive {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%+v closed: still alive after 5 s", id)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// idOf is the ID sock_diag gives c's socket.
func idOf(t *testing.T, c net.Conn) ID {
	t.Helper()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	id := ID{Sport: local.Port(), Dport: remote.Port()}
	put := func(dst *[16]byte, a netip.Addr) {
		if a.Is4() {
			id.Family = unix.AF_INET
			b := a.As4()
			copy(dst[:], b[:])
			return
		}
		id.Family = unix.AF_INET6
		*dst = a.As16()
	}
	put(&id.Src, local.Addr())
	put(&id.Dst, remote.Addr())
	return id
}
