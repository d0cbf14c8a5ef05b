package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// SilentProxy relays TCP to a server until Silence is called. From then on
// every connection it relayed stays open and carries nothing either way,
// while connections opened later relay as before: a server whose host went
// away without a reset (or a dropped NAT entry), which a client notices only
// by pinging, and reaches again on a new connection.
type SilentProxy struct {
	addr  string
	epoch atomic.Int64 // bumped by Silence; a connection relays while the epoch it opened in lasts
}

// SilencingProxy starts a SilentProxy in front of target (host:port); it
// closes every connection it made when the test ends.
func SilencingProxy(t testing.TB, target string) *SilentProxy {
	t.Helper()
	p := &SilentProxy{}
	p.addr = relay(t, target, func(wg *sync.WaitGroup, front, back net.Conn) {
		epoch := p.epoch.Load()
		wg.Go(func() { p.copy(back, front, epoch) })
		wg.Go(func() { p.copy(front, back, epoch) })
	})
	return p
}

// copy relays src to dst while epoch lasts, then reads and drops what src
// sends until it closes.
func (p *SilentProxy) copy(dst, src net.Conn, epoch int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.epoch.Load() == epoch {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Addr is the proxy's host:port, to give a client in place of the server's.
func (p *SilentProxy) Addr() string { return p.addr }

// Silence makes every connection relayed so far go silent, for good.
func (p *SilentProxy) Silence() { p.epoch.Add(1) }
