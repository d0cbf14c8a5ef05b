// Command target is the Go program the probe tests attach to. It is an ordinary net/http server that keeps its own
// exact counters, so a test can compare what the kernel saw with what the process itself saw. It prints its listen
// address on the first line of stdout.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type stats struct {
	mu        sync.Mutex
	Counts    map[string]int64 `json:"counts"`    // "METHOD STATUS" -> requests
	Durations []int64          `json:"durations"` // ns, of every PUT /work request, measured in the handler wrapper
}

func (s *stats) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		start := time.Now()
		h.ServeHTTP(rec, r)
		d := time.Since(start)
		s.mu.Lock()
		s.Counts[r.Method+" "+strconv.Itoa(rec.status)]++
		if r.URL.Path == "/work" && r.Method == http.MethodPut {
			s.Durations = append(s.Durations, int64(d))
		}
		s.mu.Unlock()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer (Hijack).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}

func main() {
	st := &stats{Counts: map[string]int64{}}
	mux := http.NewServeMux()
	// /work?us=N&status=S sleeps N microseconds and answers S; with read=1 it reads the request body first (so a
	// request that expects 100-continue gets its interim answer).
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("read") == "1" {
			io.Copy(io.Discard, r.Body)
		}
		time.Sleep(time.Duration(intParam(r, "us", 0)) * time.Microsecond)
		w.WriteHeader(intParam(r, "status", 200))
		io.WriteString(w, "ok\n")
	})
	// /hijack?ms=N takes the connection over as a WebSocket upgrade does, answers 101 on it and holds the session N
	// milliseconds before closing it; with header=1 it calls WriteHeader(101) first and lets Hijack flush it (as
	// coder/websocket does), with header=200 WriteHeader(200) (as a CONNECT proxy does), else it writes the answer on
	// the raw connection (as gorilla/websocket does).
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		header := r.URL.Query().Get("header")
		switch header {
		case "1":
			w.WriteHeader(http.StatusSwitchingProtocols)
		case "200":
			w.WriteHeader(http.StatusOK)
		}
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer c.Close()
		if header == "" {
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		}
		buf.Flush()
		time.Sleep(time.Duration(intParam(r, "ms", 0)) * time.Millisecond)
	})
	// /panic panics in the handler (net/http recovers it and closes the connection without an answer); with abort=1
	// it panics with http.ErrAbortHandler, which net/http does not log.
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("abort") == "1" {
			panic(http.ErrAbortHandler)
		}
		panic("target: /panic panics on purpose")
	})
	// /stats reports the counters (the /stats request being served is not in them yet).
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	// /gc?n=K forces K collections and reports the runtime's own stop-the-world pause count.
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		for range intParam(r, "n", 1) {
			runtime.GC()
		}
		fmt.Fprintln(w, pauses())
	})
	mux.HandleFunc("/pauses", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, pauses()) })
	// /created reports the runtime's own count of goroutines created, this request's included.
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		fmt.Fprintln(w, s[0].Value.Uint64())
	})
	// /spawn?n=M starts M goroutines and waits for them.
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for range intParam(r, "n", 1) {
			wg.Go(func() {})
		}
		wg.Wait()
	})
	// /dial?addr=A&n=N opens N TCP connections to A, one at a time, and closes each; with hold=1 it keeps them open
	// until /release closes them. With dev=D each is bound to device D once open (SO_BINDTODEVICE), as a program
	// may do after its connect: the socket's bound device then differs from the one it had at its open.
	var (
		heldMu sync.Mutex
		held   []net.Conn
	)
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		for range intParam(r, "n", 1) {
			c, err := net.Dial("tcp", r.URL.Query().Get("addr"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			if dev := r.URL.Query().Get("dev"); dev != "" {
				if err := bindToDevice(c, dev); err != nil {
					c.Close()
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			if r.URL.Query().Get("hold") == "1" {
				heldMu.Lock()
				held = append(held, c)
				heldMu.Unlock()
				continue
			}
			c.Close()
		}
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
		held = nil
	})
	// /call?url=U&n=N makes N GET requests with net/http's client and reports the statuses it got. With method=M
	// each request's Method is set to M as it is (empty included: net/http sends GET), as a reverse proxy passes on
	// the method its client sent; with distinct=1 the i-th request's is M followed by i.
	client := &http.Client{Timeout: 10 * time.Second}
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		got := map[int]int{}
		q := r.URL.Query()
		for i := range intParam(r, "n", 1) {
			req, err := http.NewRequest(http.MethodGet, q.Get("url"), nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if q.Has("method") {
				req.Method = q.Get("method")
				if q.Get("distinct") == "1" {
					req.Method += strconv.Itoa(i)
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				got[0]++
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got[resp.StatusCode]++
		}
		json.NewEncoder(w).Encode(got)
	})
	// /reverse?addr=A&n=N dials A and answers N HTTP/1.1 requests that A sends on that connection (the target speaks
	// HTTP as a server on a socket it connected, not one it accepted: a probe of served traffic must not count them).
	// The requests answered there are not in the counters.
	mux.HandleFunc("/reverse", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.Dial("tcp", r.URL.Query().Get("addr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := range intParam(r, "n", 1) {
			req, err := http.ReadRequest(br)
			if err != nil {
				http.Error(w, fmt.Sprintf("reverse request %d: %v", i, err), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"); err != nil {
				http.Error(w, fmt.Sprintf("reverse answer %d: %v", i, err), http.StatusBadGateway)
				return
			}
		}
	})
	extra(mux)

	addr := os.Getenv("HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: st.wrap(mux)}
	if os.Getenv("H2C") == "1" { // unencrypted HTTP/2 (prior knowledge) besides HTTP/1: net/http's HTTP/2 server
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if os.Getenv("TLS") == "1" { // HTTPS, HTTP/2 or HTTP/1.1 as the client's ALPN asks
		cert, err := selfSigned()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		err = srv.ServeTLS(ln, "", "")
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// pauses is the number of stop-the-world pauses the runtime itself recorded (GC and other).
func pauses() uint64 {
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}, {Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindFloat64Histogram {
			for _, c := range x.Value.Float64Histogram().Counts {
				n += c
			}
		}
	}
	return n
}

// bindToDevice binds the socket of connection c to network device dev (SO_BINDTODEVICE).
func bindToDevice(c net.Conn, dev string) error {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, dev)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("bind to device %s: %w", dev, serr)
	}
	return nil
}
