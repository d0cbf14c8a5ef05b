// Command stdproxy is the benchmark's reference point for "what the standard
// library gives": httputil.ReverseProxy with a tuned keep-alive transport and
// nothing else. It exists to justify (or not) the gateway's use of fasthttp.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18092", "listen address")
	target := flag.String("upstream", "http://127.0.0.1:18090", "upstream base URL")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second,
		ForceAttemptHTTP2: false, DisableCompression: true,
	}
	srv := &http.Server{Addr: *addr, Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
