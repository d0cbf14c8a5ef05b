package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// livenessWithin is how long the admin /healthz waits for every event loop
// to run its task (evloop's Alive). A loop turns in microseconds even when
// busy, so two seconds is a stuck loop, not a slow one; it stays under the
// probes' timeoutSeconds (3 in deploy/k8s, compose's timeout 3s), so the
// prober reads a 503 that says which, not a timeout that says nothing.
const livenessWithin = 2 * time.Second

// liveness answers the admin listener's /healthz: 200 "ok" while alive
// returns nil within livenessWithin, else 503 with its error (and a WARN:
// a restart follows a few of these, and the log should say why). GET and
// HEAD (the mux answers HEAD on a GET route).
func liveness(alive func(context.Context) error, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), livenessWithin)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := alive(ctx); err != nil {
			log.Warn("liveness failed", "error", err.Error())
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, err.Error())
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
}
