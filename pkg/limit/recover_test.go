package limit

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cutProxy forwards TCP to target until cut, which closes the listener and
// every open connection; mend listens again on the same address.
type cutProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{t: t, addr: "127.0.0.1:0", target: target}
	p.mend()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) mend() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Redis up or back must answer within CallTimeout, which is a second here,
// not the default 100 ms: the first call dials through the proxy, and once
// in 16 runs under -race on two loaded cores it took longer ("redis gave no
// answer within 100ms" before anything was cut). A cut is a refused dial or
// a closed connection, an error at once, whatever the CallTimeout.
func TestRedisFallbackRecoversWhenRedisReturns(t *testing.T) {
	direct := redisClient(t)
	proxy := newCutProxy(t, direct.Options().Addr)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.addr, DB: direct.Options().DB, Password: direct.Options().Password,
		MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })

	l := NewRedis(rdb, Rate{Count: 1000, Period: time.Minute, Burst: 20}, 4,
		Name("recover-"+time.Now().Format("150405.000000000")), Cooldown(3*time.Second), CallTimeout(time.Second))
	ctx := context.Background()
	allow := func() Decision {
		d, err := l.Allow(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := allow(); d.Limit != 20 || l.Degraded() {
		t.Fatalf("with Redis up: %+v degraded=%v", d, l.Degraded())
	}

	proxy.cut()
	if d := allow(); d.Limit != 5 || !l.Degraded() {
		t.Fatalf("with Redis cut: %+v degraded=%v, want the local share (burst 5)", d, l.Degraded())
	}
	proxy.mend()
	// Within the cool-down Redis is not tried even though it is back: an
	// outage costs one failed call per cool-down, not one per request.
	if d := allow(); d.Limit != 5 {
		t.Fatalf("during cool-down: %+v, want still local", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d := allow(); d.Limit != 20 || l.Degraded(); d = allow() {
		if time.Now().After(deadline) {
			t.Fatal("never went back to Redis after it returned")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
