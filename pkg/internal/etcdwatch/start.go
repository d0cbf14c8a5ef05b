package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// StartTimeout is how long a start waits for etcd's first answer (ten seconds) before it fails: the resolver's first
// list, a dynconfig value's first read, a service's lease and first registration. The etcd client (v3.7) dials lazily
// and waits for a connection on every call, so its DialTimeout bounds none of these, and the context a start is given
// is often its whole lifetime: unbounded, a binary pointed at an etcd that does not answer hung at start, silently.
// Ten seconds is far beyond a healthy etcd's answer (milliseconds, a WAL fsync for a write) yet short enough that a
// supervisor sees the failed start and its reason.
const StartTimeout = 10 * time.Second

// AtStart runs call, a start's call to etcd, under ctx bounded by StartTimeout. When that bound, not ctx, ended the
// call, the error says etcd gave no answer within it, so the start's error names the cause rather than a bare
// "context deadline exceeded".
func AtStart(ctx context.Context, call func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	err := call(sctx)
	if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w (no answer from etcd within %v)", err, StartTimeout)
	}
	return err
}
