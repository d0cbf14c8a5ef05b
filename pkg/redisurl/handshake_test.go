package redisurl

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A new connection of a client built from Parse's options opens with HELLO
// and nothing else before the application's first command. go-redis v9 also
// sent CLIENT MAINT_NOTIFICATIONS (a Redis Enterprise/Cloud feature) and a
// CLIENT SETINFO pipeline, which the Redis 7.0 the platform runs on refuses:
// two round trips per new connection that were answered with errors.
func TestNewConnectionSendsOnlyHello(t *testing.T) {
	opt, err := Parse(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.DB = 0 // a SELECT would be one more command, sent only for a database above 0
	rec := recordingProxy(t, opt.Addr)
	opt.Addr = rec.addr
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	sent, refusals := rec.commands(t)
	if strings.Join(sent, ",") != "HELLO,PING" {
		t.Errorf("a new connection sent %q (Redis refused %d of them), want HELLO then the application's PING", sent, refusals)
	}
}

// recorder is a proxy in front of a real server that keeps what the client
// sent and counts the error replies the server gave.
type recorder struct {
	addr     string
	mu       sync.Mutex
	sent     bytes.Buffer
	received bytes.Buffer
}

// recordingProxy forwards one connection at a time to upstream until the
// test ends, recording both directions.
func recordingProxy(t *testing.T, upstream string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: ln.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); r.copy(s, c, &r.sent); _ = s.Close() }()
			go func() { defer wg.Done(); r.copy(c, s, &r.received); _ = c.Close() }()
		}
	}()
	return r
}

// copy forwards src to dst, keeping what passes in rec.
func (r *recorder) copy(dst io.Writer, src io.Reader, rec *bytes.Buffer) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			rec.Write(buf[:n])
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// commands returns the names of the commands the client sent, in order (a
// CLIENT command with its subcommand), and how many error replies the server
// sent back. A command is written before its reply is read, so everything up
// to the last reply the client has seen is recorded.
func (r *recorder) commands(t *testing.T) ([]string, int) {
	t.Helper()
	r.mu.Lock()
	sent := append([]byte(nil), r.sent.Bytes()...)
	refusals := 0
	for _, line := range strings.Split(r.received.String(), "\r\n") {
		if strings.HasPrefix(line, "-") {
			refusals++
		}
	}
	r.mu.Unlock()
	var names []string
	br := bufio.NewReader(bytes.NewReader(sent))
	for {
		args, err := readCommand(br)
		if err == io.EOF {
			return names, refusals
		}
		if err != nil {
			t.Fatalf("client sent something that is not a RESP command: %v (%q)", err, sent)
		}
		name := strings.ToUpper(args[0])
		if name == "CLIENT" && len(args) > 1 {
			name += " " + strings.ToUpper(args[1])
		}
		names = append(names, name)
	}
}

// readCommand reads one RESP array of bulk strings, a client's command.
func readCommand(br *bufio.Reader) ([]string, error) {
	n, err := readLength(br, '*')
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		size, err := readLength(br, '$')
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, unexpectedEOF(err)
		}
		args[i] = string(b[:size])
	}
	if n == 0 {
		return nil, io.ErrUnexpectedEOF
	}
	return args, nil
}

// readLength reads a "<kind><n>\r\n" header.
func readLength(br *bufio.Reader, kind byte) (int, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		if line == "" {
			return 0, err
		}
		return 0, io.ErrUnexpectedEOF
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" || line[0] != kind {
		return 0, &strconv.NumError{Func: "readLength", Num: line, Err: strconv.ErrSyntax}
	}
	return strconv.Atoi(line[1:])
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// A server that refuses HELLO (Redis before 6.0, or a proxy that does not
// know it) still gets a working connection from Parse's options: go-redis
// falls back to AUTH and SELECT on RESP2, and nothing turned off by
// quietHandshake is sent in its place.
func TestHelloRefusedFallsBackToAuthAndSelect(t *testing.T) {
	srv := oldRedis(t)
	opt, err := Parse("redis://:s3cret@" + srv.addr + "/2")
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("ping through a server that refuses HELLO: %v", err)
	}
	if got := strings.Join(srv.commands(), ","); got != "HELLO,AUTH,SELECT,PING" {
		t.Errorf("a new connection sent %s, want HELLO (refused), then AUTH and SELECT, then the application's PING", got)
	}
}

// fakeOld is a RESP2 server that answers as Redis 5 does: HELLO and CLIENT
// subcommands are unknown, AUTH and SELECT succeed, PING pongs.
type fakeOld struct {
	addr string
	mu   sync.Mutex
	sent []string
}

func oldRedis(t *testing.T) *fakeOld {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOld{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return f
}

func (f *fakeOld) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		args, err := readCommand(br)
		if err != nil {
			return
		}
		name := strings.ToUpper(args[0])
		f.mu.Lock()
		f.sent = append(f.sent, name)
		f.mu.Unlock()
		reply := "-ERR unknown command '" + args[0] + "'\r\n"
		switch name {
		case "AUTH", "SELECT":
			reply = "+OK\r\n"
		case "PING":
			reply = "+PONG\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

func (f *fakeOld) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}
