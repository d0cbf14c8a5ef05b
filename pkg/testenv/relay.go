package testenv

import (
	"net"
	"sync"
	"testing"
)

// relay listens on a loopback port and, for each connection it accepts,
// dials target and hands both ends to serve, which starts its copying on wg.
// When the test ends it stops accepting, closes every connection it made and
// waits for serve's goroutines; a dial still under way then is closed once it
// completes, rather than relayed by copies nothing would end. It returns the listening address. A cleanup
// the caller registers after relay runs before relay's own (the test's
// cleanups run last in, first out).
func relay(t testing.TB, target string, serve func(wg *sync.WaitGroup, front, back net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		opened []net.Conn
		ended  bool // the cleanup has closed opened: a connection made since is closed at once
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		ended = true
		for _, c := range opened {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			front, err := ln.Accept()
			if err != nil {
				return
			}
			back, err := net.Dial("tcp", target)
			if err != nil {
				_ = front.Close()
				continue
			}
			mu.Lock()
			if ended {
				mu.Unlock()
				_, _ = front.Close(), back.Close()
				return
			}
			opened = append(opened, front, back)
			mu.Unlock()
			serve(&wg, front, back)
		}
	})
	return ln.Addr().String()
}
