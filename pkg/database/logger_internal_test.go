package database

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"gorm.io/gorm/logger"
)

// The statement's SQL is rendered (fc called) only for statements the logger writes: failed, slow, or any at Info
// (gorm's Debug). A fast successful statement at the default Warn level, the common case, costs no rendering.
func TestTraceRendersOnlyWhatItLogs(t *testing.T) {
	const slow = 100 * time.Millisecond
	open := func(level logger.LogLevel) logger.Interface {
		var l logger.Interface = callerGaveUp{logger.NewSlogLogger(slog.New(slog.DiscardHandler), logger.Config{
			SlowThreshold: slow, LogLevel: logger.Warn, IgnoreRecordNotFoundError: true, ParameterizedQueries: true,
		}), logger.Warn, slow}
		if level != logger.Warn {
			l = l.LogMode(level)
		}
		return l
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		level  logger.LogLevel
		ctx    context.Context
		took   time.Duration
		err    error
		render bool
	}{
		{"fast and fine", logger.Warn, context.Background(), 0, nil, false},
		{"not found", logger.Warn, context.Background(), 0, logger.ErrRecordNotFound, false},
		{"failed", logger.Warn, context.Background(), 0, errors.New("relation does not exist"), true},
		{"slow", logger.Warn, context.Background(), 2 * slow, nil, true},
		{"slow and not found", logger.Warn, context.Background(), 2 * slow, logger.ErrRecordNotFound, true},
		{"ended by its caller", logger.Warn, cancelled, 0, context.Canceled, false},
		{"debug", logger.Info, context.Background(), 0, nil, true},
		{"silent", logger.Silent, context.Background(), 0, errors.New("x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rendered := false
			open(tc.level).Trace(tc.ctx, time.Now().Add(-tc.took), func() (string, int64) {
				rendered = true
				return "SELECT 1", 1
			}, tc.err)
			if rendered != tc.render {
				t.Fatalf("rendered = %v, want %v", rendered, tc.render)
			}
		})
	}
}
