package svctest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// Deliveries is a slog.Handler that keeps each record's message and the time
// it was logged: a consumer that logs once per delivery of a failing message
// (retried, dead-lettered, dropped) lets a test read the redelivery schedule
// the broker really followed.
type Deliveries struct {
	mu   sync.Mutex
	msgs []string
	at   []time.Time
}

func (d *Deliveries) Enabled(context.Context, slog.Level) bool { return true }
func (d *Deliveries) WithAttrs([]slog.Attr) slog.Handler       { return d }
func (d *Deliveries) WithGroup(string) slog.Handler            { return d }

func (d *Deliveries) Handle(_ context.Context, r slog.Record) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, r.Message)
	d.at = append(d.at, r.Time)
	return nil
}

// FollowedBackOff fails t unless the messages logged are want, in order, one
// per delivery, and the gaps between them follow backOff: each at least half
// its step, the whole within a loose upper bound, which a nak with a delay
// besides the back-off exceeds several times over. Half, not all: a delivery
// is timed when its handler logs, after its database work, so a gap is the
// step plus the next delivery's lag less the one before's, and on a loaded
// machine one late log shortens the next gap (148.9 ms for a 200 ms step
// under -race at load 15–18, 1 run in 40). A plain nak comes back in a few
// milliseconds: half a step still tells it apart.
func (d *Deliveries) FollowedBackOff(t testing.TB, want []string, backOff []time.Duration) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Equal(d.msgs, want) {
		t.Fatalf("logged %q, want %q", d.msgs, want)
	}
	var gaps []time.Duration
	var schedule time.Duration
	for i := 1; i < len(d.at); i++ {
		gap, step := d.at[i].Sub(d.at[i-1]), backOff[min(i-1, len(backOff)-1)]
		gaps, schedule = append(gaps, gap), schedule+step
		if gap < step/2 {
			t.Errorf("delivery %d came %v after delivery %d, want the back-off step %v", i+1, gap, i, step)
		}
	}
	t.Logf("gaps between deliveries %v, back-off %v", gaps, backOff)
	if total := d.at[len(d.at)-1].Sub(d.at[0]); total > 2*schedule+2*time.Second {
		t.Errorf("last delivery %v after the first, want about the schedule's %v", total, schedule)
	}
}
