package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// HoldingProxy relays TCP to the shared test Redis and, once Hold is called,
// keeps back every answer Redis sends until the test ends. A client of Addr
// then meets a Redis slower than any timeout it has, while every other test
// keeps a fast one (CLIENT PAUSE would slow the shared server for all).
//
// Answers are held, not delayed: a delay only beats a client's timeout while
// the machine keeps to that timing, and two loaded cores do not.
type HoldingProxy struct {
	addr string
	held atomic.Bool
	done chan struct{} // closed when the test ends: held answers are dropped
}

// HoldingRedis starts a HoldingProxy in front of the shared test Redis
// (REDIS_URL); it relays answers until Hold is called and stops, closing
// every connection it made, when the test ends.
func HoldingRedis(t testing.TB) *HoldingProxy {
	t.Helper()
	opt, err := redis.ParseURL(Redis(t))
	if err != nil {
		t.Fatalf("testenv: REDIS_URL: %v", err)
	}
	p := &HoldingProxy{done: make(chan struct{})}
	p.addr = relay(t, opt.Addr, func(wg *sync.WaitGroup, front, back net.Conn) {
		wg.Go(func() { _, _ = io.Copy(back, front); _ = back.Close() })
		wg.Go(func() { p.relayAnswers(front, back) })
	})
	t.Cleanup(func() { close(p.done) }) // before relay's: a held answer's relay returns, then its connections close
	return p
}

// relayAnswers copies what Redis sends (back) to the client (front) until
// either side closes or an answer arrives while held; that answer, and all
// after it, go nowhere.
func (p *HoldingProxy) relayAnswers(front, back net.Conn) {
	defer front.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := back.Read(buf)
		if n > 0 {
			if p.held.Load() {
				<-p.done
				return
			}
			if _, werr := front.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Addr is the proxy's host:port, to give a Redis client in place of the
// shared server's.
func (p *HoldingProxy) Addr() string { return p.addr }

// Hold makes the proxy keep back every answer from now until the test ends.
// Commands still reach Redis: a command sent after Hold may have taken effect
// even though its client timed out.
func (p *HoldingProxy) Hold() { p.held.Store(true) }
