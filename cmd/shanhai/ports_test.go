package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every connection this machine opens takes its local port from the
// kernel's ephemeral range, so a -port block there is free when the run
// checks it and a client's a moment later: on this shared machine 21 of 25
// starts at -port 47080 stopped on 48084, the local port of somebody's
// connection to PostgreSQL (in TIME_WAIT for a minute after it closed), and
// 20 of 20 at -port 23180 started. The run refuses such a block before
// anything starts, says why and names a block below the range.
func TestRunRefusesAPortBlockInTheEphemeralRange(t *testing.T) {
	if testing.Short() {
		t.Skip("would start the embedded platform in a child process before the fix")
	}
	lo, hi, ok := ephemeralRange()
	if !ok || hi-lo < 3000 {
		t.Fatalf("ephemeral range %d-%d (ok %v): this test needs Linux's /proc/sys/net/ipv4/ip_local_port_range", lo, hi, ok)
	}
	port := lo + 1500 // the HTTP and the pprof half both inside
	run := asProgram("-measure -port "+strconv.Itoa(port)+" -data "+t.TempDir(), "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	if err == nil || run.ProcessState.ExitCode() != 1 {
		t.Fatalf("-port %d (inside the ephemeral range %d-%d): the run ended with %v, want it refused with status 1:\n%s",
			port, lo, hi, err, out)
	}
	for _, want := range []string{"-port " + strconv.Itoa(port), "ephemeral", "ip_local_port_range", "-port 28080"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "ready in") {
		t.Errorf("the run started before refusing:\n%s", out)
	}
}

// The blocks refused are those with a port in the range, in either half;
// the suggestion is below the range.
func TestOutsideEphemeral(t *testing.T) {
	for _, c := range []struct {
		port int
		ok   bool
	}{
		{8080, true}, {28080, true}, {31763, true}, // 31763+1004 = 32767, the last port below
		{31764, false}, {32000, false}, {38080, false}, {47080, false}, {60999, false}, {61000, true},
	} {
		err := outsideEphemeral(c.port, 32768, 60999)
		if (err == nil) != c.ok {
			t.Errorf("outsideEphemeral(%d) = %v, want ok %v", c.port, err, c.ok)
		}
	}
	// A range that leaves no room below for a block is not held against any
	// port: there is nothing better to choose.
	if err := outsideEphemeral(8080, 1024, 65535); err != nil {
		t.Errorf("range 1024-65535: %v, want no refusal", err)
	}
}

// A port held as the local port of a connection (nothing listens on it) is
// refused with a message that says so, not that a connection to it is
// closing.
func TestStartNamesAPortHeldByAConnection(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		for {
			c, err := peer.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	conn, err := d.Dial("tcp", peer.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	held := conn.LocalAddr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Setenv("PULSAR_URL", "")
	p, err := Start(ctx, Options{DataDir: t.TempDir(), Ports: map[string]int{"order": held}})
	if err == nil {
		p.Stop()
		t.Fatalf("Start succeeded with the order service's port %d the local port of a connection", held)
	}
	if msg := err.Error(); !strings.Contains(msg, "port "+strconv.Itoa(held)+" (order)") || !strings.Contains(msg, "local port") {
		t.Fatalf("Start error = %q, want it to name port %d (order) as a connection's local port", msg, held)
	}
}
