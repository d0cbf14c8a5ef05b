package kafkaleg

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A generation that ended is still ready within the grace (a rebalance), and not after it, saying for how long and
// the latest join failure.
func TestGroupStateGraceAfterAGeneration(t *testing.T) {
	g := newGroupState(slog.New(slog.DiscardHandler), "g")
	g.begin()
	g.end()
	ended := g.ended
	if err := g.ready("g", 20*time.Second, ended.Add(19*time.Second)); err != nil {
		t.Errorf("19 s after a generation ended, within a 20 s grace: %v", err)
	}
	g.failed(errors.New("coordinator refused"))
	err := g.ready("g", 20*time.Second, ended.Add(30*time.Second))
	if err == nil || !strings.Contains(err.Error(), "30s") || !strings.Contains(err.Error(), "coordinator refused") {
		t.Errorf("30 s after a generation ended, past a 20 s grace: %v, want an error with 30s and the join failure", err)
	}
	g.begin()
	if err := g.ready("g", 20*time.Second, ended.Add(time.Hour)); err != nil {
		t.Errorf("in a generation: %v", err)
	}
}
