package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// start runs a loopproxy in front of an upstream that answers with the
// request path, and returns the proxy's address.
func start(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "path="+r.URL.Path)
	}))
	t.Cleanup(up.Close)
	ua, err := net.ResolveTCPAddr("tcp", strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	booted := make(chan gnet.Engine, 1)
	p := &proxy{addr: ua, boot: func(e gnet.Engine) { booted <- e }}
	done := make(chan error, 1)
	go func() { done <- run(p, "127.0.0.1:0") }()
	var eng gnet.Engine
	select {
	case eng = <-booted:
	case err := <-done:
		t.Fatalf("loopproxy did not start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(ctx)
		<-done
	})
	fd, err := eng.Dup()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

func get(t *testing.T, c *http.Client, addr, path string) {
	t.Helper()
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "path="+path {
		t.Errorf("GET %s = %d %q", path, resp.StatusCode, b)
	}
}

// Keep-alive clients in parallel each get their own answers: the loops
// hand upstream connections back and forth without mixing responses.
func TestProxiesInParallel(t *testing.T) {
	addr := start(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for i := range 50 {
				get(t, c, addr, fmt.Sprintf("/g%d/r%d", g, i))
			}
		}()
	}
	wg.Wait()
}

// Pipelined requests sent in one write are answered in order.
func TestPipelinedInOrder(t *testing.T) {
	addr := start(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req strings.Builder
	for i := range 3 {
		fmt.Fprintf(&req, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("path=/p%d", i); string(b) != want {
			t.Fatalf("response %d = %q, want %q", i, b, want)
		}
	}
}
