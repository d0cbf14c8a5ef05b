package evloop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A gateway embedded in a process that lives on (cmd/shanhai, these tests)
// must leave nothing of itself behind at Stop. An upstream dial in flight
// then was a goroutine and a socket until the dial ended, DialTimeout
// later; and if it connected while the loops were exiting, gnet's Enroll
// queued it on a loop that never ran it again and waited for good
// (eventloop_unix.go, <-connOpened), keeping the goroutine and both
// descriptors for the process's life. Stop now ends the dials in flight
// and waits for them before the loops exit.
func TestStopLeavesNoUpstreamDialBehind(t *testing.T) {
	up, _ := unanswered(t)
	socks := ownSockets(t, up)
	addr, s, _ := startServerWith(t, proxy.Options{}, Options{Loops: 1, DialTimeout: time.Minute},
		staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}})

	// The request's dial never connects; the route timeout answers 504
	// with the dial still in flight.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || r.StatusCode() != 504 {
		t.Fatalf("a request to an upstream that never accepts: %d %v, want 504", r.StatusCode(), err)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	noDialLeft(t, s, up, socks)
}

// The dial that made the leak for good: connected, and handed to gnet
// (Enroll), while the loop it is for is busy, and gnet then tells the loop
// to exit before the loop opens it. A loop runs its urgent queue before
// the rest, and a task joins the urgent queue until it holds
// netpoll.MaxPollEventsCap (1,024) tasks, the rest after it: with that
// many queued on the loop (resumptions of blocked requests, sweeps,
// probes), the connection waited in the second queue and the exit went
// through the first, as it did for a connection handed over once the loop
// had exited. gnet's Enroll then waited for the loop to open it for ever:
// a goroutine, and the socket with gnet's duplicate of it, for the life of
// the process. Stop now waits for such a dial before the loops are told to
// exit.
func TestStopLeavesNoEnrolledDialBehind(t *testing.T) {
	up, room := unanswered(t)
	socks := ownSockets(t, up)
	c, s := dialInFlight(t, orderPool(up), Options{Loops: 1, DialTimeout: time.Minute})
	// Its client leaves, so that Stop does not wait for the request (the
	// dial goes on for the pool).
	c.Close()
	waitFor(t, "the request given up", func() bool { return s.inflight() == 0 })

	// Hold the loop in a task, with its urgent queue full behind it.
	release := holdLoop(t, s)
	el := onlyLoop(s)
	for range netpoll.MaxPollEventsCap {
		if err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { return nil })); err != nil {
			t.Fatal(err)
		}
	}
	room() // the dial connects at its next SYN, and is handed to the held loop
	end := time.Now().Add(10 * time.Second)
	for goroutines("gnet/v2.(*eventloop).enroll") == 0 {
		if time.Now().After(end) {
			t.Fatal("the dial was not handed to gnet within 10 s of room in the upstream's queue")
		}
		time.Sleep(10 * time.Millisecond)
	}

	stopped := stopInBackground(s, 20*time.Second)
	// Let the loop go once the engine has told it to exit (gnet waits for
	// the loops), or once Stop waits for the dial (which waits for the loop).
	waitFor(t, "the engine stopping", func() bool {
		return goroutines("gnet/v2.(*engine).stop", "errgroup.(*Group).Wait") > 0 ||
			goroutines("evloop.(*Server).OnShutdown") > 0
	})
	release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	noDialLeft(t, s, up, socks)
}

// A request that needs a dial once the engine is stopping (OnShutdown has
// begun; the loops still run until it returns) gets no dial: it is
// answered 503 gateway-stopping, not left waiting for a connection that
// never comes (the sweep that would time it out stops with the ticker, at
// the same moment), and not as a failed dial (a 502, counted against the
// upstream's breaker, an idempotent one retried and refused again).
func TestRequestWithoutADialAtStopIsAnswered(t *testing.T) {
	up, _ := startUpstream(t)
	addr, s, _ := startServerWith(t, proxy.Options{}, Options{Loops: 1},
		staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}})
	s.shutDown() // as OnShutdown does first
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "gateway-stopping") {
		t.Fatalf("a request needing a dial once the engine is stopping: %d %s %v, want 503 gateway-stopping", r.StatusCode(), r.Body(), err)
	}
	// The dial's own goroutine; the refusal's task, run on the loop, is a
	// closure of dial too.
	if n := goroutines("created by github.com/shanhai-dev/shanhai/gateway/internal/evloop.(*loop).dial"); n > 0 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d upstream dials started once the engine was stopping:\n%s", n, buf[:runtime.Stack(buf, true)])
	}
}

// A request whose dial is in flight when the engine stops (Stop's drain
// ran out first) has the dial ended by OnShutdown, and is answered 503
// gateway-stopping before the loop exits: the upstream did nothing wrong,
// so its breaker hears of no failure and no retry is taken from its
// budget. The answer alone does not show it: a failure retried is refused
// a dial, and answered 503 gateway-stopping too when that refusal reaches
// the loop before its exit.
func TestDialEndedAtStopIsAnswered(t *testing.T) {
	up, _ := unanswered(t)
	socks := ownSockets(t, up)
	pool := orderPool(up)
	br, budget := &outcomeLog{}, &takeLog{}
	svc := pool.Service("order")
	svc.Breaker, svc.Budget = br, budget
	c, s := dialInFlight(t, pool, Options{Loops: 1, DialTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = s.Stop(ctx) // the drain runs out with the request still waiting for its dial
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "gateway-stopping") {
		t.Fatalf("a request whose dial the stop ended: %d %s %v, want 503 gateway-stopping", r.StatusCode(), r.Body(), err)
	}
	br.mu.Lock()
	got := slices.Clone(br.got)
	br.mu.Unlock()
	if taken := budget.taken.Load(); len(got) != 1 || got[0] != breaker.Ignored || taken != 0 {
		t.Fatalf("the attempt whose dial the stop ended: breaker outcomes %v, %d retries taken; want [Ignored] and none", got, taken)
	}
	noDialLeft(t, s, up, socks)
}

// dialInFlight serves the order route from pool with so, sends a GET on
// a new connection (getOrderOn), and returns it once the request's
// upstream dial is under way.
func dialInFlight(t *testing.T, pool *upstream.Pool, so Options) (net.Conn, *Server) {
	t.Helper()
	c, s := getOrderOn(t, pool, so)
	waitFor(t, "the upstream dial under way", func() bool { return goroutines("evloop.(*loop).dial.func") == 1 })
	return c, s
}

// noDialLeft fails the test unless, once s has stopped, no goroutine
// dials or enrolls an upstream connection and the process holds no more
// sockets to up than the socks it held before the server.
func noDialLeft(t *testing.T, s *Server, up string, socks int) {
	t.Helper()
	<-s.served
	for end := time.Now().Add(5 * time.Second); dialing() > 0 || socketsTo(t, up) > socks; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			t.Fatalf("5 s after Stop: %d goroutines dialling or enrolling an upstream connection, %d descriptors of sockets to the upstream (%d before the server); goroutines:\n%s",
				dialing(), socketsTo(t, up), socks, buf[:runtime.Stack(buf, true)])
		}
	}
}

// ownSockets is socketsTo(up) before the server starts: the test's own
// (unanswered's, filling the queue), so never none.
func ownSockets(t *testing.T, up string) int {
	t.Helper()
	n := socketsTo(t, up)
	if n == 0 {
		t.Fatal("the socket filling the upstream's queue is not counted: socketsTo sees nothing")
	}
	return n
}

// dialing counts the goroutines dialling an upstream connection (dial) or
// handing one to a loop (gnet's enroll). Other goroutines come and go
// with the runtime and libraries (fasthttp's clock, started once for the
// process), so they are not counted.
func dialing() int {
	return goroutines("evloop.(*loop).dial.func") + goroutines("gnet/v2.(*eventloop).enroll")
}

// goroutines counts the goroutines whose stack holds every one of frames.
func goroutines(frames ...string) int {
	buf := make([]byte, 1<<20)
	n := 0
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		all := true
		for _, f := range frames {
			all = all && strings.Contains(g, f)
		}
		if all {
			n++
		}
	}
	return n
}

// unanswered is the address of a listener whose accept queue is full: a
// connection to it is neither accepted nor refused (its SYN is dropped),
// so a dial waits for its timeout, or until room accepts the connection
// that fills the queue: a dial then connects at its next SYN (a second or
// more later, the kernel's retransmission).
func unanswered(t *testing.T) (addr string, room func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 holds one connection; the one that fills it is
	// never accepted.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	filler, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	// The queue is full once a dial no longer connects.
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("a listener with backlog 0 and one connection queued took a second")
	}
	return addr, func() {
		nfd, _, err := syscall.Accept(fd)
		if err != nil {
			t.Fatal(err)
		}
		_ = syscall.Close(nfd)
	}
}

// socketsTo counts this process's descriptors of TCP sockets whose peer
// is addr's port, connected or still connecting (/proc/net/tcp and tcp6,
// matched to /proc/self/fd by inode): a dial's socket and gnet's duplicate
// of it are two. Counting every descriptor instead let other goroutines
// decide: a connection an earlier test's server closed during this test
// hid a leaked socket, and a file opened meanwhile failed it.
func socketsTo(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprintf(":%04X", ap.Port())
	peers := map[string]bool{} // inodes of the sockets whose remote port is addr's
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if errors.Is(err, fs.ErrNotExist) && table == "/proc/net/tcp6" {
			continue // a kernel without IPv6
		}
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			if f := strings.Fields(line); len(f) > 9 && strings.HasSuffix(f[2], port) {
				peers[f[9]] = true
			}
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		// A descriptor closed since ReadDir has no link: not counted.
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && peers[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			n++
		}
	}
	return n
}

// A loop that died on its own (an epoll_wait error, which also starts the
// engine's shutdown) or is stuck in a callback never opens a connection
// handed to it, and Stop's wait for the dials in flight waited for it for
// good: Serve never returned. The wait is bounded (dialWait), and what it
// abandons is logged at WARN. The loop here is held in a task rather than
// killed: a dead loop's queued registration never runs, so gnet's enroll
// goroutine would stay for the rest of the test process and fail the
// later tests' count of dials left; released once the wait has given up,
// the loop opens the connection and exits, and nothing is left.
func TestStopGivesUpOnADialItsLoopNeverOpens(t *testing.T) {
	up, room := unanswered(t)
	socks := ownSockets(t, up)
	var logs testenv.LogBuffer
	c, s := dialInFlight(t, orderPool(up), Options{Loops: 1, DialTimeout: time.Minute, dialWait: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	c.Close() // so that Stop does not wait for the request
	waitFor(t, "the request given up", func() bool { return s.inflight() == 0 })

	release := holdLoop(t, s)
	room()
	waitFor(t, "the dial handed to gnet", func() bool { return goroutines("gnet/v2.(*eventloop).enroll") > 0 })

	stopped := stopInBackground(s, 20*time.Second)
	end := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "upstream dials abandoned at stop") {
		if time.Now().After(end) {
			t.Fatalf("10 s into Stop with the dial's loop held, the wait for the dial has not given up; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "dials=1") || !strings.Contains(l, up) {
		t.Fatalf("the warning does not say one dial to %s was abandoned:\n%s", up, l)
	}
	release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	noDialLeft(t, s, up, socks)
}

// stopInBackground runs s.Stop with a deadline within from now on a
// goroutine of its own, for a test to act while the stop goes on; its
// error is sent on the channel returned.
func stopInBackground(s *Server, within time.Duration) <-chan error {
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		stopped <- s.Stop(ctx)
	}()
	return stopped
}

// holdLoop holds s's only loop in a task until the returned release is
// called (at the latest, when the test ends).
func holdLoop(t *testing.T, s *Server) (release func()) {
	t.Helper()
	el := onlyLoop(s)
	ch, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	if err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		close(held)
		<-ch
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	<-held
	return release
}

// onlyLoop is s's only loop (Options.Loops 1), once it has a client.
func onlyLoop(s *Server) gnet.EventLoop {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := range s.loops {
		return el
	}
	return nil
}

// Goroutines that hand a loop a task (a blocked request resumed, an admin
// path's answer, a dial's failure) did so whatever the engine's state:
// gnet closes the loops' pollers after OnShutdown and refuses Execute
// only after that, so a task handed in between wrote to a closed eventfd,
// or to whatever socket or file had just taken its number. Alive and the
// ticker stop when OnShutdown begins; these stop when it returns, as the
// tasks they hand until then still run ahead of the loops' exit (a dial
// ended by OnShutdown answers its requests so).
func TestNothingHandedToALoopOnceShutDown(t *testing.T) {
	s := New(Options{})
	el := &wedgedLoop{}
	l := s.loopOf(el)
	ran := 0
	l.onLoop(func() { ran++ })
	if len(el.tasks) != 1 {
		t.Fatalf("%d tasks handed to a running loop, want 1", len(el.tasks))
	}
	s.OnShutdown(gnet.Engine{})
	l.onLoop(func() { ran++ })
	if len(el.tasks) != 1 {
		t.Fatalf("%d tasks handed in all, want 1: one was handed once OnShutdown had returned", len(el.tasks))
	}
	_ = el.tasks[0].Run(context.Background())
	if ran != 1 {
		t.Fatalf("the task handed ran %d times, want 1", ran)
	}
}
