package kafkaleg

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/outage"
)

// groupState is what Ready reads: whether the leg is in a consumer group generation, when its last one ended, and
// why the latest attempt to join failed.
type groupState struct {
	mu    sync.Mutex
	in    bool
	ended time.Time // zero: no generation yet
	// joins are the failed attempts to join since the last generation began (the latest error says why), logged by
	// their changes: kafka-go retries every JoinGroupBackoff, a second, and a line each time buried the rest.
	joins outage.Log
}

func newGroupState(log *slog.Logger, group string) *groupState {
	return &groupState{joins: outage.Log{
		Logger: log, Level: slog.LevelWarn, Repeat: time.Minute, Attrs: []any{"group", group},
		Failing: "kafka group: no generation yet; retrying", Ended: "kafka group: generation after failed attempts",
	}}
}

func (g *groupState) begin() {
	g.joins.OK()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.in = true
}

func (g *groupState) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.in, g.ended = false, time.Now()
}

func (g *groupState) failed(err error) { g.joins.Fail(err) }

func (g *groupState) ready(group string, grace time.Duration, now time.Time) error {
	why := "joining"
	if f := g.joins.Current(); f.Err != nil {
		why = f.Err.Error()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
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
