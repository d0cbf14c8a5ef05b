package service_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// warnings keeps the messages of the WARN records a logger writes, from any logger derived from it too (the service
// logs from its workers' goroutines as well).
type warnings struct {
	mu  sync.Mutex
	msg []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.mu.Lock()
		w.msg = append(w.msg, r.Message)
		w.mu.Unlock()
	}
	return nil
}

func (w *warnings) count(msg string) (n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msg {
		if m == msg {
			n++
		}
	}
	return n
}

// A stop cancels the round's ctx (periodic.Run hands it the workers' ctx): the statements it cuts are not failures,
// so the round ends without a WARN "housekeeping" line for either of them (it logged two).
func TestHousekeepingCutByTheStopLogsNoWarning(t *testing.T) {
	w := &warnings{}
	h := newHarness(t, func(o *service.Options) { o.Logger = slog.New(w) })
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the stop, as it reaches the round's statements
	service.Housekeep(h.svc, ctx)
	if n := w.count("housekeeping"); n > 0 {
		t.Fatalf("a round the stop cut logged %d WARN housekeeping lines, want none", n)
	}
}
