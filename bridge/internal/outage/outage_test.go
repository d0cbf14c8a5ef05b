package outage_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/outage"
)

// lines decodes the JSON log lines written to b.
func lines(t *testing.T, b *strings.Builder) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// A run of failures is logged when it starts, when its error changes and when Repeat has passed since its last line
// (with the attempts in between), and once when it ends; the attempts in between are not logged.
func TestLogSaysChangesNotAttempts(t *testing.T) {
	var b strings.Builder
	l := &outage.Log{Logger: slog.New(slog.NewJSONHandler(&b, nil)), Level: slog.LevelWarn, Failing: "failing", Ended: "ended",
		Repeat: time.Minute, Attrs: []any{"what", "x"}}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	refused, gone := errors.New("refused"), errors.New("gone")
	l.OKAt(t0) // not failing: nothing to say
	for i := range 10 {
		l.FailAt(t0.Add(time.Duration(i)*time.Second), refused) // 1 line
	}
	l.FailAt(t0.Add(10*time.Second), gone) // changed: 1 line
	l.FailAt(t0.Add(20*time.Second), gone) // unchanged, within a minute
	l.FailAt(t0.Add(71*time.Second), gone) // a minute after its line: 1 line
	if f := l.Current(); f.Attempts != 13 || !f.Since.Equal(t0) || !f.Last.Equal(t0.Add(71*time.Second)) || f.Err != gone {
		t.Errorf("Current = %+v, want 13 attempts since %v, the last at +71s with %v", f, t0, gone)
	}
	l.OKAt(t0.Add(90 * time.Second)) // 1 line
	l.OKAt(t0.Add(91 * time.Second)) // already ended
	if f := l.Current(); f.Attempts != 0 {
		t.Errorf("Current after OK = %+v, want none", f)
	}

	got := lines(t, &b)
	want := []struct {
		msg, err      string
		attempts, new float64
	}{{"failing", "refused", 1, 1}, {"failing", "gone", 11, 10}, {"failing", "gone", 13, 2}, {"ended", "", 13, 0}}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %s", len(got), len(want), b.String())
	}
	for i, w := range want {
		g := got[i]
		if g["msg"] != w.msg || g["what"] != "x" || g["attempts"] != w.attempts {
			t.Errorf("line %d = %v, want %q with what=x and %v attempts", i, g, w.msg, w.attempts)
		}
		if w.msg == "failing" && (g["level"] != "WARN" || g["err"] != w.err || g["attempts_since_last_log"] != w.new) {
			t.Errorf("line %d = %v, want a warning with err %q and %v attempts since the last line", i, g, w.err, w.new)
		}
	}
	if last := got[3]; last["level"] != "INFO" || last["failing_for"] != "1m30s" {
		t.Errorf("ending line = %v, want info, failing_for 1m30s", last)
	}

	// A new run starts afresh: its first failure is logged even with the error the last run ended on.
	b.Reset()
	l.FailAt(t0.Add(100*time.Second), gone)
	if got := lines(t, &b); len(got) != 1 || got[0]["attempts"] != 1.0 {
		t.Errorf("a new run's first failure logged %v, want one line with 1 attempt", got)
	}
}

// Without Repeat an unchanged error is logged once however long it lasts (the stream check, probed at every poll).
func TestLogWithoutRepeatLogsOnlyChanges(t *testing.T) {
	var b strings.Builder
	l := &outage.Log{Logger: slog.New(slog.NewJSONHandler(&b, nil)), Level: slog.LevelError, Failing: "failing", Ended: "ended"}
	t0 := time.Now()
	for i := range 5 {
		l.FailAt(t0.Add(time.Duration(i)*time.Hour), errors.New("short"))
	}
	if got := lines(t, &b); len(got) != 1 || got[0]["level"] != "ERROR" {
		t.Errorf("five hours of one error logged %v, want one error line", got)
	}
}
