package server

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// healthz is liveness: the process answers HTTP. It checks no dependency,
// because restarting a healthy process does not bring a database back.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

const readyzPath = "/readyz"

// readyz runs every check concurrently under ReadyTimeout and answers 503
// naming each failing check (as problem+json errors), or 200.
func (s *Server) readyz(c *gin.Context) {
	if s.stopping.Load() {
		problem.Abort(c, http.StatusServiceUnavailable, "shutting down")
		return
	}
	if s.starting.Load() > 0 {
		problem.Abort(c, http.StatusServiceUnavailable, "starting")
		return
	}
	failed, took := s.probe(c.Request.Context())
	if len(failed) > 0 {
		names := ""
		for i, f := range failed {
			if i > 0 {
				names += ", "
			}
			names += f.Field
		}
		s.log.WarnContext(c.Request.Context(), "not ready", "failed", names)
		problem.Abort(c, http.StatusServiceUnavailable, "not ready: "+names, failed...)
		return
	}
	if s.wasReady.CompareAndSwap(false, true) {
		// The start-up benchmark's timeline reads this: which check the
		// first 200 waited for.
		s.log.Debug("first ready answer", took...)
		if s.o.OnReady != nil {
			// The whole answer goes out before the hook runs: c.Data sets
			// its length, so the flush sends it complete (c.JSON sets
			// none, and net/http would send chunks and end them only once
			// the handler returned).
			c.Data(http.StatusOK, "application/json; charset=utf-8", readyBody)
			c.Writer.Flush()
			s.o.OnReady()
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// readyBody is what c.JSON writes for a 200 from /readyz.
var readyBody = []byte(`{"status":"ready"}`)

// probe returns the failed checks, and each check's name and duration as
// slog key-value pairs.
func (s *Server) probe(ctx context.Context) (failed []problem.FieldError, took []any) {
	ctx, cancel := context.WithTimeout(ctx, s.o.ReadyTimeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, ch := range s.o.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := runProbe(ctx, ch)
			d := time.Since(start).String()
			mu.Lock()
			took = append(took, ch.Name, d)
			mu.Unlock()
			if err == nil {
				return
			}
			s.log.WarnContext(ctx, "readiness check failed", "check", ch.Name, "error", err.Error())
			mu.Lock()
			failed = append(failed, problem.FieldError{Field: ch.Name, Detail: err.Error()})
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(failed, func(i, j int) bool { return failed[i].Field < failed[j].Field })
	return failed, took
}

// runProbe returns the probe's error, or the context's if the probe ignores
// its deadline (the goroutine is then left to finish on its own).
func runProbe(ctx context.Context, ch Check) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- panicError{r}
			}
		}()
		done <- ch.Probe(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) metricsHandler() http.Handler {
	if s.o.Telemetry != nil {
		return s.o.Telemetry.MetricsHandler()
	}
	// Without telemetry.Setup there are no OTel metrics, but the Go runtime
	// metrics of the default registry are still worth serving.
	return promhttp.Handler()
}
