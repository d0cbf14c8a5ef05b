// Command testupstream is the real upstream process the gateway's
// integration tests route to. It registers itself in etcd (pkg/discovery),
// answers every request with what it saw, remembers requests by
// X-Request-ID, counts hits, and can be told to fail or be slow.
//
//	GET  /_hits              number of proxied requests received
//	GET  /_seen?id=<req id>  the headers of that request (JSON), 404 if unseen
//	POST /_control?status=503&sleep=2s   answer every later request so
//
// A request may ask for itself: ?sleep=2s, ?status=503.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
)

type seen struct {
	Instance string              `json:"instance"`
	Version  string              `json:"version"`
	Method   string              `json:"method"`
	URI      string              `json:"uri"`
	Header   map[string][]string `json:"header"`
	Body     int                 `json:"body_bytes"`
}

func main() {
	service := flag.String("service", "", "service name to register")
	version := flag.String("version", "v1", "release version to register")
	id := flag.String("id", "", "instance id")
	etcd := flag.String("etcd", "", "etcd endpoints, comma separated")
	flag.Parse()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	addr := ln.Addr().String()
	var (
		hits     atomic.Int64
		mu       sync.Mutex
		byID     = map[string]seen{}
		status   atomic.Int64
		sleepFor atomic.Int64
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_hits", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, hits.Load())
	})
	mux.HandleFunc("GET /_seen", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s, ok := byID[r.URL.Query().Get("id")]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("POST /_control", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		st, _ := strconv.Atoi(q.Get("status"))
		status.Store(int64(st))
		d, _ := time.ParseDuration(q.Get("sleep"))
		sleepFor.Store(int64(d))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		s := seen{Instance: *id, Version: *version, Method: r.Method, URI: r.RequestURI, Header: r.Header, Body: int(n)}
		mu.Lock()
		byID[r.Header.Get("X-Request-ID")] = s
		mu.Unlock()
		d := time.Duration(sleepFor.Load())
		if v, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			d = v
		}
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		code := int(status.Load())
		if v, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
			code = v
		}
		if code == 0 {
			code = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream-Instance", *id)
		// A hop-by-hop header the gateway must not pass on.
		w.Header().Set("Connection", "X-Upstream-Private")
		w.Header().Set("X-Upstream-Private", "secret")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(s)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var reg *discovery.EtcdRegistry
	if *etcd != "" {
		cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*etcd, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fail(err)
		}
		reg = discovery.NewEtcdRegistry(cli, 5*time.Second)
		if err := reg.Register(ctx, discovery.Instance{ID: *id, Service: *service, Addr: addr, Version: *version}); err != nil {
			fail(err)
		}
	}
	go func() { _ = srv.Serve(ln) }()
	// The test reads this line to learn the address and that registration is done.
	fmt.Printf("READY %s\n", addr)

	<-ctx.Done()
	if reg != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = reg.Deregister(dctx)
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testupstream:", err)
	os.Exit(1)
}
