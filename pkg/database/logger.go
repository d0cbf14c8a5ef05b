package database

import (
	"context"
	"time"

	"gorm.io/gorm/logger"
)

// callerGaveUp is gorm's logger except for statements ended by their own context: a client that went away, a
// deadline the gateway propagated, a stop. gorm logs those as ERROR "SQL executed" with "context canceled", one line
// per abandoned request under load and one at every stop of a relay in the middle of a round, though the database did
// nothing wrong; the caller gets the error and decides what it means. Everything else is logged as gorm would.
type callerGaveUp struct{ logger.Interface }

func (l callerGaveUp) LogMode(level logger.LogLevel) logger.Interface {
	return callerGaveUp{l.Interface.LogMode(level)}
}

func (l callerGaveUp) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil && ctx != nil && ctx.Err() != nil {
		return
	}
	l.Interface.Trace(ctx, begin, fc, err)
}
