package server_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/server"
)

// worker is a background goroutine as a service's Start runs it: it lives
// until its stop function cancels it, and that function waits for it.
type worker struct {
	starts, stops atomic.Int32
	running       atomic.Int32
}

func (w *worker) start(ctx context.Context) (func(context.Context), error) {
	w.starts.Add(1)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	w.running.Add(1)
	wg.Go(func() {
		defer w.running.Add(-1)
		<-wctx.Done()
	})
	return func(context.Context) {
		w.stops.Add(1)
		cancel()
		wg.Wait()
	}, nil
}

type ctxKey struct{}

func TestWorkersStartThenStop(t *testing.T) {
	var ws server.Workers
	var got struct{ start, stop any }
	startCtx := context.WithValue(context.Background(), ctxKey{}, "start")
	stopCtx := context.WithValue(context.Background(), ctxKey{}, "stop")
	err := ws.Start(startCtx, func(ctx context.Context) (func(context.Context), error) {
		got.start = ctx.Value(ctxKey{})
		return func(ctx context.Context) { got.stop = ctx.Value(ctxKey{}) }, nil
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	ws.Stop(stopCtx)
	if got.start != "start" || got.stop != "stop" {
		t.Errorf("start saw ctx %v, stop saw %v: want each its caller's", got.start, got.stop)
	}
}

func TestWorkersStartOnce(t *testing.T) {
	var ws server.Workers
	var w worker
	if err := ws.Start(t.Context(), w.start); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := ws.Start(t.Context(), w.start); !errors.Is(err, server.ErrWorkersStarted) {
		t.Errorf("second Start = %v, want ErrWorkersStarted", err)
	}
	ws.Stop(t.Context())
	if w.starts.Load() != 1 || w.stops.Load() != 1 || w.running.Load() != 0 {
		t.Errorf("%d starts, %d stops, %d still running: want one of each, none left", w.starts.Load(), w.stops.Load(), w.running.Load())
	}
}

// TestWorkersRefuseStartAfterStop: a Start after Stop would run workers on
// the connections the stop is about to close, and nothing would end them.
func TestWorkersRefuseStartAfterStop(t *testing.T) {
	for _, started := range []bool{false, true} {
		var ws server.Workers
		var w worker
		if started {
			if err := ws.Start(t.Context(), w.start); err != nil {
				t.Fatalf("Start: %v", err)
			}
		}
		ws.Stop(t.Context())
		if err := ws.Start(t.Context(), w.start); !errors.Is(err, server.ErrWorkersStopped) {
			t.Errorf("started before Stop %v: Start after Stop = %v, want ErrWorkersStopped", started, err)
		}
		if want := map[bool]int32{false: 0, true: 1}[started]; w.starts.Load() != want {
			t.Errorf("started before Stop %v: start ran %d times, want %d", started, w.starts.Load(), want)
		}
		if w.running.Load() != 0 {
			t.Errorf("started before Stop %v: %d workers left running", started, w.running.Load())
		}
	}
}

func TestWorkersStopIsIdempotent(t *testing.T) {
	var never server.Workers
	never.Stop(t.Context()) // before any Start: nothing to end
	never.Stop(t.Context())

	var ws server.Workers
	var w worker
	if err := ws.Start(t.Context(), w.start); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ws.Stop(t.Context())
	ws.Stop(t.Context())
	if w.stops.Load() != 1 {
		t.Errorf("stop ran %d times, want once", w.stops.Load())
	}
}

// TestWorkersFailedStartMayBeRetried: a start that failed started nothing,
// so it neither counts as the one start nor leaves anything for Stop.
func TestWorkersFailedStartMayBeRetried(t *testing.T) {
	var ws server.Workers
	boom := errors.New("consume: no such consumer")
	err := ws.Start(t.Context(), func(context.Context) (func(context.Context), error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want start's error", err)
	}
	var w worker
	if err := ws.Start(t.Context(), w.start); err != nil {
		t.Fatalf("Start after a failed one: %v", err)
	}
	ws.Stop(t.Context())
	if w.stops.Load() != 1 || w.running.Load() != 0 {
		t.Errorf("%d stops, %d still running: want the retried start's workers ended", w.stops.Load(), w.running.Load())
	}
}

// TestWorkersStopWaitsForStartUnderWay: Stop called while start runs must
// end what start is starting, not return before start has set it.
func TestWorkersStopWaitsForStartUnderWay(t *testing.T) {
	var ws server.Workers
	var w worker
	entered, release := make(chan struct{}), make(chan struct{})
	started := make(chan error, 1)
	go func() {
		started <- ws.Start(t.Context(), func(ctx context.Context) (func(context.Context), error) {
			close(entered)
			<-release
			return w.start(ctx)
		})
	}()
	<-entered
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ws.Stop(t.Context())
		// Checked here, as Stop returns: a Stop that did not wait would
		// find no stop function yet and end nothing.
		if w.stops.Load() != 1 {
			t.Errorf("Stop returned having run %d stops, want the under-way start's", w.stops.Load())
		}
	}()
	close(release)
	<-stopped
	if err := <-started; err != nil {
		t.Errorf("Start: %v", err)
	}
	if w.running.Load() != 0 {
		t.Errorf("%d workers left running after Stop", w.running.Load())
	}
}

// TestWorkersStopRacingStart runs Start and Stop at once, in either order
// (run it with -race): whichever wins, Stop returns with every worker start
// ran ended, and a Start that lost is refused without running start.
func TestWorkersStopRacingStart(t *testing.T) {
	for range 200 {
		var ws server.Workers
		var w worker
		var wg sync.WaitGroup
		ready := make(chan struct{})
		var startErr error
		wg.Go(func() {
			<-ready
			startErr = ws.Start(context.Background(), w.start)
		})
		wg.Go(func() {
			<-ready
			ws.Stop(context.Background())
			if s, e := w.starts.Load(), w.stops.Load(); s != e {
				t.Errorf("Stop returned with %d starts and %d stops", s, e)
			}
		})
		close(ready)
		wg.Wait()
		switch {
		case startErr == nil && w.starts.Load() == 1:
		case errors.Is(startErr, server.ErrWorkersStopped) && w.starts.Load() == 0:
		default:
			t.Fatalf("Start = %v with %d starts: want nil and one, or ErrWorkersStopped and none", startErr, w.starts.Load())
		}
		if w.running.Load() != 0 {
			t.Fatalf("%d workers left running", w.running.Load())
		}
	}
}
