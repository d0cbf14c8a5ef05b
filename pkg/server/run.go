package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Run listens on Addr (and AdminAddr if set) and serves until ctx is done or
// the process gets SIGINT or SIGTERM, then shuts down in the package's fixed
// order. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return s.failedStart(fmt.Errorf("server %s: listen %s: %w", s.o.Name, s.o.Addr, err), nil)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests listen on port 0).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error { return s.ServeStarting(ctx, ln) }

// ServeStarting is Serve that runs the given start-up steps (start consumers,
// register in discovery) concurrently with each other and with the server
// coming up, instead of one after another before it. /readyz answers 503
// ("starting") until every step has returned, so ready still means
// discoverable and consuming, as callers that wait for readiness expect.
// Each step gets a context that ends when shutdown begins. A step's error
// shuts the server down in the usual order and is returned. Shutdown waits for
// every step to return before it deregisters and runs the OnShutdown hooks,
// so a registration still in flight is never left behind and a hook never
// races the step that set up what it stops.
func (s *Server) ServeStarting(ctx context.Context, ln net.Listener, steps ...func(context.Context) error) error {
	callersGone := callersStopped(ctx)
	stop := context.CancelFunc(func() {})
	if !hostHandlesSignals(ctx) {
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	}
	defer stop()

	// net/http's own complaints (bad TLS handshakes, superfluous
	// WriteHeader calls) go to the JSON log too, not to bare stderr.
	errorLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	ln = &onceCloser{Listener: ln}
	srv := &http.Server{
		ConnState:         s.fresh.track,
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		// A whole request, body included; net/http lifts it once the body is
		// read, so a long handler keeps its context and its response.
		ReadTimeout: s.o.ReadTimeout,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    errorLog,
	}
	var admin *http.Server
	errc := make(chan error, 2)
	if s.o.AdminAddr != "" {
		aln, err := net.Listen("tcp", s.o.AdminAddr)
		if err != nil {
			return s.failedStart(fmt.Errorf("server %s: listen admin %s: %w", s.o.Name, s.o.AdminAddr, err), ln)
		}
		admin = &http.Server{Handler: adminMux(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog}
		go func() { errc <- serve(admin, aln) }()
		s.log.Info("admin listener started", "addr", aln.Addr().String())
	}
	// RunService's page-out of the executable's start-up pages, after the
	// first ready answer (pageout.go); set before anything serves.
	s.o.OnReady = afterReady(ctx, s.o.OnReady)
	// Not ready until the steps are done, from the first request on.
	s.starting.Add(int32(len(steps)))
	go func() { errc <- serve(srv, ln) }()
	s.log.Info("server started", "name", s.o.Name, "version", s.o.Version, "addr", ln.Addr().String())

	stepCtx, cancelSteps := context.WithCancel(ctx)
	defer cancelSteps()
	stepErr := make(chan error, len(steps))
	var running sync.WaitGroup
	began := time.Now()
	for i, step := range steps {
		running.Go(func() {
			err := step(stepCtx)
			if err != nil {
				stepErr <- err
				return // stays "starting": the server is about to shut down
			}
			// The start-up benchmark's timeline reads these: which step the
			// first 200 from /readyz waited for.
			s.log.Debug("start-up step done", "step", i+1, "duration", time.Since(began).String())
			s.starting.Add(-1)
		})
	}

	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutdown requested", "cause", context.Cause(ctx).Error())
	case serveErr = <-errc:
		if serveErr == nil {
			serveErr = errors.New("listener closed unexpectedly")
		}
		s.log.Error("listener failed; shutting down", "error", serveErr.Error())
	case serveErr = <-stepErr:
		s.log.Error("start-up step failed; shutting down", "error", serveErr.Error())
	}
	cancelSteps()
	running.Wait()
	// Restore default signal handling: a second Ctrl-C kills a shutdown
	// that hangs, as an operator expects.
	stop()
	return errors.Join(serveErr, s.shutdown(srv, admin, ln, callersGone))
}

// failedStart ends a start that failed before anything was served (a
// listener that could not be bound): it closes ln, if given, and stops as
// shutdown does, minus what only a server that served needs (the wait for
// callers and the drain). The hooks were added when the service was wired,
// so they hold its database, brokers and etcd client: a binary that exits
// leaves those to the OS, but cmd/shanhai hosts several services in one
// process, where a service that failed to start would otherwise keep them
// open, and its last spans unflushed, for as long as the others run.
func (s *Server) failedStart(err error, ln net.Listener) error {
	if ln != nil {
		ln.Close()
	}
	s.log.Error("start failed; shutting down", "error", err.Error())
	return errors.Join(err, s.shutdown(nil, nil, nil, nil))
}

// StartFailed ends the start of a server whose caller could not even give it
// a listener (pkg/server/discoverable listens before ServeStarting) as
// failedStart does when Run cannot bind HTTP_ADDR: the hooks run once, the
// instance deregisters and telemetry is flushed. It returns err joined with
// what that stop reported.
func (s *Server) StartFailed(err error) error {
	return s.failedStart(err, nil)
}

func serve(srv *http.Server, ln net.Listener) error {
	// net.ErrClosed: shutdown closed the listener itself (drain.go). A
	// listener closed by anyone else still ends in "closed unexpectedly".
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// DeregisterTimeout bounds the deregistration (at most ShutdownTimeout). A
// healthy etcd revokes a lease in milliseconds; one that has not answered
// within this is treated as away, and the lease it keeps expires on its TTL.
// It had a whole ShutdownTimeout, before the drain, that no stop budget
// counted (deploy/stopgrace_test.go counts this).
const DeregisterTimeout = time.Second

// DeregisterStep is the StepError.Step of a failed deregistration.
const DeregisterStep = "deregister"

// StepError is a shutdown step that failed, named ("deregister", "drain",
// "on-shutdown hook 1", "telemetry flush"), so that a host can tell a step
// whose failure loses nothing from one that does: cmd/shanhai's embedded run
// does not count a deregistration that timed out against its own etcd, which
// closes right after, as a failed stop.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }

func (e *StepError) Unwrap() error { return e.Err }

// FlushFloor is the least the telemetry flush gets (at most ShutdownTimeout),
// however late the steps before it ended: the spans of the last requests are
// what explains a slow stop. Otherwise it takes what is left of the stop's
// deadline (see shutdown), so a quick stop gives a slow collector more.
const FlushFloor = time.Second

// FlushTimeout is how long the telemetry flush of a stop that is to end by
// stopBy may take: what is left, at least FlushFloor, at most shutdown (the
// stop's ShutdownTimeout, which also caps the floor). The gateway's stop
// follows the same rule.
func FlushTimeout(stopBy time.Time, shutdown time.Duration) time.Duration {
	return min(shutdown, max(time.Until(stopBy), min(FlushFloor, shutdown)))
}

// shutdown runs the fixed order under one deadline for the whole stop, fixed
// when it begins: DeregisterTimeout, DeregisterDelay, a ShutdownTimeout for
// the drain and one for each OnShutdown hook, and FlushFloor. The drain and
// each hook keep a ShutdownTimeout of their own, so one slow step cannot eat
// the next one's time (a hook may still run over its deadline by the graces
// it gives what must not be lost, which the stop budgets count). The two
// steps that had a ShutdownTimeout each and no place in any budget take less:
// the deregistration DeregisterTimeout, so a hung etcd neither delays the
// drain long nor pushes the stop past the orchestrator's SIGKILL, and the
// telemetry flush what is left of the deadline, at least FlushFloor, so a
// dead collector holds the stop no longer than that. callersGone
// (CallersStopped; nil when not given) ends the wait after deregistering
// early. A nil srv is a server that never served (failedStart): it has no
// callers to wait for and nothing to drain; the rest runs as usual.
func (s *Server) shutdown(srv, admin *http.Server, ln net.Listener, callersGone <-chan struct{}) error {
	s.stopping.Store(true)
	s.mu.Lock()
	hooks := append([]func(context.Context) error(nil), s.hooks...)
	s.mu.Unlock()
	deregisterTimeout := min(DeregisterTimeout, s.o.ShutdownTimeout)
	stopBy := time.Now().Add(deregisterTimeout + s.o.DeregisterDelay + time.Duration(1+len(hooks))*s.o.ShutdownTimeout + min(FlushFloor, s.o.ShutdownTimeout))
	var errs []error
	step := func(name string, timeout time.Duration, fn func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		if err := fn(ctx); err != nil {
			failed := &StepError{Step: name, Err: err}
			s.log.Error("shutdown step failed", StepKey, name, TimedOutKey, failed.TimedOut(), "error", err.Error())
			errs = append(errs, failed)
			return
		}
		s.log.Info("shutdown step done", "step", name, "duration", time.Since(start).String())
	}

	if s.o.Deregister != nil {
		step(DeregisterStep, deregisterTimeout, s.o.Deregister)
		if s.o.DeregisterDelay > 0 && srv != nil {
			s.awaitCallers(callersGone)
		}
	}
	if srv != nil {
		step("drain", s.o.ShutdownTimeout, func(ctx context.Context) error {
			// Stop accepting, then give the connections accepted just before a
			// moment to send their requests, which Shutdown would drop. Those
			// still silent at the end of that wait sent no request to drain:
			// they are closed, or Shutdown, which counts a silent connection as
			// busy until it is 5 s old, would wait for them to the deadline and
			// report requests cut off when none were (a drain shorter than 5 s).
			// The wait ends a little before the deadline, so that Shutdown sees
			// their goroutines end.
			ln.Close()
			settleCtx, cancel := context.WithTimeout(ctx, s.o.ShutdownTimeout-settleReserve(s.o.ShutdownTimeout))
			s.fresh.settle(settleCtx, newConnGrace)
			cancel()
			s.fresh.closeSilent()
			err := srv.Shutdown(ctx)
			if admin != nil {
				// pprof profiles can run for 30 s; do not wait for them.
				admin.Close()
			}
			if err != nil {
				// Deadline passed with requests still running: cut them off
				// rather than hang the rollout.
				s.cutOff.Store(true)
				srv.Close()
				return fmt.Errorf("in-flight requests cut off: %w", err)
			}
			return nil
		})
	}
	for i, h := range hooks {
		step(fmt.Sprintf("on-shutdown hook %d", i+1), s.o.ShutdownTimeout, h)
	}
	if s.o.Telemetry != nil {
		step("telemetry flush", FlushTimeout(stopBy, s.o.ShutdownTimeout), s.o.Telemetry.Shutdown)
	}
	return errors.Join(errs...)
}

// awaitCallers waits DeregisterDelay after deregistering, for callers that may
// still choose this instance, or until callersGone says none can. The log
// line says which ended it, so a stop's duration can be read from the log.
func (s *Server) awaitCallers(callersGone <-chan struct{}) {
	start := time.Now()
	t := time.NewTimer(s.o.DeregisterDelay)
	defer t.Stop()
	endedBy := "delay"
	select {
	case <-t.C:
	case <-callersGone: // nil: never
		endedBy = "callers stopped"
	}
	s.log.Info("shutdown step done", "step", "deregister delay", "duration", time.Since(start).String(), "ended_by", endedBy)
}

// adminMux serves pprof. It is a fresh mux, not http.DefaultServeMux, so
// nothing registered there by an import can leak onto the admin port, and
// pprof never appears on the public port.
func adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
