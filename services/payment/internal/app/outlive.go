package app

import (
	"context"
	"fmt"
	"time"
)

// Outlive returns a context with ctx's values that ends grace after ctx
// does, and its cancel function (its Cause then says why). It is for a write
// that must not be lost to a stop's cut-off, which ends the handler's
// context: the record of what already happened (a provider's answer, a dead
// letter) still gets a bounded time to land, and a database that hangs
// cannot hold the stop for ever.
func Outlive(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	detached, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(fmt.Errorf("%w: %s after the handler was cut off", context.DeadlineExceeded, grace))
		case <-detached.Done():
		}
	})
	return detached, func() { stop(); cancel(nil) }
}

// AnswerGrace is how long storing a provider's answer may go on once the
// handler's context has ended: a healthy database stores it in milliseconds.
const AnswerGrace = 5 * time.Second
