package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A part that cannot start stops the run: Start names it and why, and the
// parts that did start are stopped again (their ports are free).
func TestStartNamesThePartThatFailed(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	userPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Setenv("PULSAR_URL", "")
	p, err := Start(ctx, Options{DataDir: t.TempDir(), Ports: map[string]int{
		"order": taken.Addr().(*net.TCPAddr).Port, "user": userPort,
	}})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with the order service's port taken")
	}
	if msg := err.Error(); !strings.Contains(msg, "order ended before it was ready") || !strings.Contains(msg, "address already in use") {
		t.Fatalf("Start error = %q, want it to name order and the taken port", msg)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(userPort)))
	if err != nil {
		t.Fatalf("the user service still holds its port after the failed start: %v", err)
	}
	ln.Close()
}
