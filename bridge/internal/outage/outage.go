// Package outage logs a condition that fails again and again (a consumer group that cannot join, retried every
// second; a stream check run at every probe; a partition whose fetches fail) by its changes rather than by its
// attempts: a line when it starts failing, when its error changes, optionally again after a while with the attempts
// since, and one when it stops. The bridge did this three ways in three places (a string of the last error, a boolean
// of the last verdict, a counter with a clock); an operator reading the logs now sees the same shape, with the same
// attributes, for each.
package outage

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log is one condition's record of failures. Set its fields before the first Fail; it is safe for concurrent use,
// and must not be copied after that.
type Log struct {
	Logger  *slog.Logger
	Level   slog.Level // of the lines saying it fails (the line saying it stopped is at info)
	Failing string     // message of those lines; each carries the error, "attempts" and "attempts_since_last_log"
	Ended   string     // message of the line when it stops failing, with "attempts" and "failing_for"
	// Repeat logs an unchanged error again once this long has passed since its last line, so a failure that lasts
	// shows it still does; zero logs only changes.
	Repeat time.Duration
	Attrs  []any // on every line: what fails (the group, the stream, the topic and partition)

	mu      sync.Mutex
	cur     Failure   // the run going on
	logged  string    // the error last logged
	loggedN int       // cur.Attempts when it was logged
	at      time.Time // when
}

// Fail records a failed attempt, logging it when it is the first of a run, its error differs from the one last
// logged, or Repeat has passed since that line.
func (l *Log) Fail(err error) { l.FailAt(time.Now(), err) }

// FailAt is Fail at a given time (tests).
func (l *Log) FailAt(now time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &l.cur
	if c.Attempts == 0 {
		c.Since = now
	}
	c.Attempts++
	c.Last, c.Err = now, err
	msg := err.Error()
	if c.Attempts > 1 && msg == l.logged && (l.Repeat <= 0 || now.Sub(l.at) < l.Repeat) {
		return
	}
	l.Logger.Log(context.Background(), l.Level, l.Failing, l.attrs(
		"err", err, "attempts", c.Attempts, "attempts_since_last_log", c.Attempts-l.loggedN)...)
	l.logged, l.loggedN, l.at = msg, c.Attempts, now
}

// OK records that the condition holds again, logging it once if it was failing.
func (l *Log) OK() { l.OKAt(time.Now()) }

// OKAt is OK at a given time (tests).
func (l *Log) OKAt(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur.Attempts == 0 {
		return
	}
	l.Logger.Info(l.Ended, l.attrs("attempts", l.cur.Attempts, "failing_for", now.Sub(l.cur.Since).Round(time.Millisecond).String())...)
	l.cur, l.logged, l.loggedN, l.at = Failure{}, "", 0, time.Time{}
}

// Failure is the current run of failures; the zero Failure when the condition holds.
type Failure struct {
	Since    time.Time // the run's first failed attempt
	Last     time.Time // its latest
	Attempts int
	Err      error // the latest attempt's error
}

// Current is the run of failures going on, if any (Attempts > 0).
func (l *Log) Current() Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// attrs is Attrs followed by more, without writing into Attrs' backing array.
func (l *Log) attrs(more ...any) []any {
	return append(l.Attrs[:len(l.Attrs):len(l.Attrs)], more...)
}
