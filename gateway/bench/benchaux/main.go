// Command benchaux plays the gateway's neighbours in the benchmark: it
// serves a JWKS (as the user service would), writes an access token signed
// with the matching key, and accepts OTLP/HTTP exports (as a collector
// would) so that tracing costs what it costs in production.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18099", "listen address (JWKS at /.well-known/jwks.json, OTLP sink at /v1/*)")
	tokenFile := flag.String("token", "", "write an access token for user bench-user here")
	flag.Parse()
	key, err := auth.GenerateKey()
	if err != nil {
		log.Fatal(err)
	}
	signer := auth.NewSigner(key)
	tok, err := signer.Sign("bench-user", 2*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	if *tokenFile != "" {
		if err := os.WriteFile(*tokenFile, []byte(tok), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signer.JWKS())
	})
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
