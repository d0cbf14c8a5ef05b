package kafkaleg

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// groupState is what Ready reads: whether the leg is in a consumer group generation, when its last one ended, and
// why the latest attempt to join failed.
type groupState struct {
	mu      sync.Mutex
	in      bool
	ended   time.Time // zero: no generation yet
	lastErr error     // the latest join failure since the last generation began
}

func (g *groupState) begin() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.in, g.lastErr = true, nil
}

func (g *groupState) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.in, g.ended = false, time.Now()
}

func (g *groupState) failed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastErr = err
}

func (g *groupState) ready(group string, grace time.Duration, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	why := "joining"
	if g.lastErr != nil {
		why = g.lastErr.Error()
	}
	switch {
	case g.in:
		return nil
	case g.ended.IsZero():
		return fmt.Errorf("no generation of kafka consumer group %s yet: %s", group, why)
	case now.Sub(g.ended) < grace:
		return nil
	default:
		return fmt.Errorf("no generation of kafka consumer group %s for %s: %s", group, now.Sub(g.ended).Round(time.Second), why)
	}
}

// joinFailures keeps a group that cannot join from logging each attempt (kafka-go retries every JoinGroupBackoff, a
// second): a failure is logged when its error differs from the last one logged, or a minute after it, with the
// attempts since; the generation that ends such a run is logged with their count.
type joinFailures struct {
	n       int       // failed attempts since the last generation
	logged  string    // the error last logged
	loggedN int       // n when it was logged
	at      time.Time // when
}

func (f *joinFailures) log(log *slog.Logger, group string, err error) {
	f.n++
	if err.Error() == f.logged && time.Since(f.at) < time.Minute {
		return
	}
	log.Warn("kafka group: no generation yet; retrying", "group", group, "err", err, "attempts", f.n, "attempts_since_last_log", f.n-f.loggedN)
	f.logged, f.loggedN, f.at = err.Error(), f.n, time.Now()
}

func (f *joinFailures) joined(log *slog.Logger, group string) {
	if f.n > 0 {
		log.Info("kafka group: generation after failed attempts", "group", group, "attempts", f.n)
	}
	*f = joinFailures{}
}
