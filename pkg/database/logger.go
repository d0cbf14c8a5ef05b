package database

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm/logger"
)

// callerGaveUp is gorm's logger except for statements ended by their own context: a client that went away, a
// deadline the gateway propagated, a stop. gorm logs those as ERROR "SQL executed" with "context canceled", one line
// per abandoned request under load and one at every stop of a relay in the middle of a round, though the database did
// nothing wrong; the caller gets the error and decides what it means. Everything else is logged as gorm would.
//
// It also keeps level and slow, the level and slow-statement threshold it logs with, to skip statements that would
// not be logged before gorm renders them: gorm's slog logger calls fc, which writes the statement's SQL text out
// (ExplainSQL's regular expressions), before it decides, and that was 7 % of the order service's CPU and 16 % of
// payment's under load (profiles at 250 orders/s) for nothing, as a successful fast statement is logged only at Info.
type callerGaveUp struct {
	logger.Interface
	level logger.LogLevel
	slow  time.Duration
}

func (l callerGaveUp) LogMode(level logger.LogLevel) logger.Interface {
	return callerGaveUp{l.Interface.LogMode(level), level, l.slow}
}

func (l callerGaveUp) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil && ctx != nil && ctx.Err() != nil {
		return
	}
	// What the wrapped logger does with these, as OpenWith configures it (IgnoreRecordNotFoundError): nothing.
	quiet := err == nil || errors.Is(err, logger.ErrRecordNotFound)
	if quiet && l.level < logger.Info && (l.slow <= 0 || time.Since(begin) <= l.slow) {
		return
	}
	l.Interface.Trace(ctx, begin, fc, err)
}
