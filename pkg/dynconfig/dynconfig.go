// Package dynconfig holds settings that operators change while the platform
// runs — rate limits, canary weights, fault injection — as one JSON document
// under an etcd key, watched and swapped in atomically.
//
// A bad document (invalid JSON, a JSON null, or rejected by the type's Validate
// method) is logged, counted in dynconfig.rejected and ignored: the last good
// value stays in force. A typo in a live config must never take the platform
// down or reset it to zero values. Each bad version (revision and bytes) is
// reported once, however often a re-read after an interrupted watch (a
// compaction, a lost connection) finds it still there. An etcd restarted
// without its data (its revision back below the watch's) is read again within
// RevisionProbe: a key it no longer has takes watchers back to initial. A
// re-read compares the key's document as well as its revision, so one such
// etcd wrote at the applied revision in the gap is applied too.
//
// Deleting the key, by contrast, is an operator's deliberate act and takes
// every watcher back to its initial value (the binary's default, or what its
// environment configured): the value a process starting now would run with.
// Keeping the last document instead would leave the running replicas on
// settings that no longer exist anywhere while every replica started later
// ran the defaults, a fleet split by start time that nobody could see in
// etcd. To switch a setting off, write a document that says so; to return
// to the defaults, delete the key.
package dynconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch"
)

// rejected counts documents ignored as bad, per key: a log line alone is easy to miss while the old value quietly stays.
// Instrument creation only fails on an invalid name; the no-op instrument it returns then keeps Watch working.
var rejected, _ = otel.Meter("github.com/shanhai-dev/shanhai/pkg/dynconfig").Int64Counter("dynconfig.rejected",
	metric.WithDescription("Config documents ignored as bad JSON or invalid; the last good value stayed."),
	metric.WithUnit("{document}"))

// Prefix is where named configs live in etcd.
const Prefix = "/shanhai/config/"

// Key returns the etcd key of the config called name.
func Key(name string) string { return Prefix + name }

// Validator is implemented by config types that can check themselves; a value
// whose Validate fails is treated like bad JSON.
type Validator interface{ Validate() error }

// Value is the live value of one key. Load is a single atomic read.
type Value[T any] struct {
	key     string
	initial T
	cur     atomic.Pointer[T]
	log     *slog.Logger
	probe   time.Duration // how often the watch checks etcd's revision (RevisionProbe when 0)
	rev     atomic.Int64
	// bad and badDoc are the revision and bytes of the last document
	// rejected, touched only by Watch and then its watch goroutine. A re-read
	// after a compaction finds a bad document that is still there again; it
	// was reported already. The bytes tell a good document an etcd wiped in
	// between wrote at the same revision from that one.
	bad    int64
	badDoc []byte
	// doc is the applied document's bytes (nil for initial), touched as bad
	// is: a re-read compares them as well as the revision (see watch).
	doc []byte

	mu       sync.Mutex
	onChange []func(T)
}

// Watch reads key now and follows it until ctx ends. key is a full etcd key;
// a bare name (no leading '/') is taken as Key(name). Until the key exists —
// and again if it is deleted — Load returns initial. Fields absent from the
// JSON take their zero values, not initial's: the document in etcd is the
// whole config. Unknown fields are ignored, so a newer config can be written
// before every reader is upgraded, unless T refuses them (payment's and the
// gateway's settings do, with jsonkey.Decode: there a misspelt name was a
// setting silently at zero). An error is returned only if etcd cannot be
// read at start: it gives no answer within StartTimeout (ctx, the watch's
// lifetime, does not bound that read), or ctx ends first.
func Watch[T any](ctx context.Context, cli *clientv3.Client, key string, initial T) (*Value[T], error) {
	if !strings.HasPrefix(key, "/") {
		key = Key(key)
	}
	v := &Value[T]{key: key, initial: initial, log: slog.Default()}
	v.cur.Store(&initial)
	// Bounded: unbounded, this read hung a binary at start, silently,
	// before it listened (see etcdwatch.StartTimeout).
	var resp *clientv3.GetResponse
	if err := etcdwatch.AtStart(ctx, func(ctx context.Context) (err error) {
		resp, err = cli.Get(ctx, key)
		return err
	}); err != nil {
		return nil, fmt.Errorf("dynconfig %s: %w", key, err)
	}
	if len(resp.Kvs) > 0 {
		v.set(ctx, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}
	go v.watch(ctx, cli, resp.Header.Revision+1, resp)
	return v, nil
}

// Load returns the current value. Treat it as read-only: it is shared.
func (v *Value[T]) Load() T { return *v.cur.Load() }

// Revision is the etcd revision of the applied document (0 for initial).
func (v *Value[T]) Revision() int64 { return v.rev.Load() }

// OnChange registers fn to run (on the watch goroutine) after every accepted
// change, for consumers that must rebuild something rather than Load per use.
func (v *Value[T]) OnChange(fn func(T)) {
	v.mu.Lock()
	v.onChange = append(v.onChange, fn)
	v.mu.Unlock()
}

// RevisionProbe is how often a watch checks that etcd's revision has not gone back (etcd restarted without its
// data, or restored from a snapshot), ten seconds: etcd holds a watch from a revision it has not reached and sends
// nothing, so the value would stay at a document that no longer exists and miss every later write. The same probe
// finds such an etcd written past the old revision before it looked: the key there is not the one the watch showed.
// Three small reads of the key per watch (etcdwatch.RevisionProbe): next to nothing for etcd.
const RevisionProbe = etcdwatch.RevisionProbe

// StartTimeout is how long Watch waits for etcd's first answer (ten seconds)
// before it fails: the bound of every start's first etcd call
// (etcdwatch.StartTimeout).
const StartTimeout = etcdwatch.StartTimeout

// watch follows the key from rev until ctx ends or the client closes. read is the read of the key at rev-1 it goes on
// from (nil when there is none): what etcd should still hold there, which the probe checks (etcdwatch.Follow).
func (v *Value[T]) watch(ctx context.Context, cli *clientv3.Client, rev int64, read *clientv3.GetResponse) {
	every := v.probe
	if every <= 0 {
		every = RevisionProbe
	}
	probe := time.NewTicker(every)
	defer probe.Stop()
	// renew: etcd's revision went back, so the revisions remembered are of a history it no longer has. A document of
	// the new one may carry the same revision as the applied one (a config is written early in a cluster's life) or
	// as a rejected one: the re-read applies what it finds whatever its revision.
	renew := false
	for ctx.Err() == nil {
		renew = v.follow(ctx, cli, rev, read, probe.C, every) || renew
		// Compacted, etcd's revision went back or holds another key, its member lost the leader, or the client gave
		// up: re-read, then watch from there. Only from a read: watching on from the revision reached without one, the
		// probe took what the etcd then answering held as what the watch showed, so an etcd found replaced (and the
		// re-read failing once) was followed from the old history's revision for good, the key's value there never
		// applied.
		resp, ok := v.rereadUntilDone(ctx, cli)
		if !ok {
			return
		}
		applied := v.rev.Load()
		if renew {
			v.bad, v.badDoc, applied, renew = 0, nil, -1, false // -1 matches no revision: what the key holds now is applied
		}
		// The value is compared too: an etcd wiped while the watch was down (ended on an error, no probe to tell)
		// and refilled may hold the key at the applied revision with another document.
		switch {
		case len(resp.Kvs) > 0 && (resp.Kvs[0].ModRevision != applied || !bytes.Equal(resp.Kvs[0].Value, v.doc)):
			v.set(ctx, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
		case len(resp.Kvs) == 0 && applied != 0:
			v.store(&v.initial, 0, nil) // deleted while we were not watching
		}
		rev, read = resp.Header.Revision+1, resp
		v.log.InfoContext(ctx, "dynconfig watch resumed", "key", v.key, "from_revision", rev)
	}
}

// rereadUntilDone reads the key again a second after the watch ended, and every second after a failed read, until a
// read succeeds (ok) or ctx ends or the client closes (not ok).
func (v *Value[T]) rereadUntilDone(ctx context.Context, cli *clientv3.Client) (resp *clientv3.GetResponse, ok bool) {
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case <-cli.Ctx().Done():
			// Closed client: nothing more to watch. Without this the
			// re-read below would retry forever on a closed connection
			// (its ctx may never end: payment watches until the client
			// closes), which a process hosting several services outlives.
			return nil, false
		case <-time.After(time.Second):
		}
		resp, err := v.reread(ctx, cli)
		if err == nil {
			return resp, true
		}
		if ctx.Err() == nil && cli.Ctx().Err() == nil {
			v.log.WarnContext(ctx, "dynconfig: reading the key again failed, retrying", "key", v.key, "error", err.Error())
		}
	}
}

// follow applies the watch's changes from rev until it ends or a probe finds etcd's revision below the last one seen,
// or the key there other than the watch showed, or its log lost (etcdwatch.End.Cause), and returns whether a probe
// ended it.
func (v *Value[T]) follow(ctx context.Context, cli *clientv3.Client, rev int64, read *clientv3.GetResponse,
	probe <-chan time.Time, every time.Duration) bool {
	end := etcdwatch.Follow(ctx, cli, v.key, rev, read, probe, every, func(resp clientv3.WatchResponse) {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				v.store(&v.initial, 0, nil)
				v.log.InfoContext(ctx, "dynconfig key deleted, back to initial value", "key", v.key)
				continue
			}
			v.set(ctx, ev.Kv.Value, ev.Kv.ModRevision)
		}
	})
	switch {
	case end.Err != nil:
		v.log.WarnContext(ctx, "dynconfig watch interrupted", "key", v.key, "error", end.Err.Error())
	case end.WentBack:
		v.log.WarnContext(ctx, "dynconfig: etcd's revision went back (restarted without its data?), reading again",
			"key", v.key, "revision", end.Revision, "seen", end.Next-1)
	case end.Replaced:
		v.log.WarnContext(ctx, "dynconfig: etcd holds another key at the revision last seen than the watch showed"+
			" (restarted without its data and written since?), reading again", "key", v.key, "revision", end.Revision,
			"seen", end.Next-1)
	case end.Lost:
		v.log.WarnContext(ctx, "dynconfig: etcd lost its log (wiped or restored from a snapshot?), reading again",
			"key", v.key, "cause", end.Cause, "revision", end.Revision)
	}
	// Each way etcd's history is not the one the applied revision belongs to: the re-read applies what it finds.
	return end.WentBack || end.Replaced || end.Lost
}

// reread gets the key once, giving up when the client closes: the etcd
// client retries a read on a closing connection for as long as its ctx lasts.
func (v *Value[T]) reread(ctx context.Context, cli *clientv3.Client) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(cli.Ctx(), cancel)
	defer stop()
	return cli.Get(ctx, v.key)
}

func (v *Value[T]) set(ctx context.Context, data []byte, rev int64) {
	if rev == v.bad && bytes.Equal(data, v.badDoc) {
		return // logged and counted when first seen: one report per bad version
	}
	next, err := decode[T](data)
	if err != nil {
		v.bad, v.badDoc = rev, bytes.Clone(data)
		v.log.ErrorContext(ctx, "dynconfig: ignoring bad value, keeping the last good one",
			"key", v.key, "revision", rev, "error", err.Error())
		rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("key", v.key)))
		return
	}
	v.store(&next, rev, bytes.Clone(data))
	v.log.InfoContext(ctx, "dynconfig applied", "key", v.key, "revision", rev)
}

func (v *Value[T]) store(next *T, rev int64, doc []byte) {
	v.doc = doc
	v.cur.Store(next)
	v.rev.Store(rev)
	v.mu.Lock()
	fns := v.onChange
	v.mu.Unlock()
	for _, fn := range fns {
		fn(*next)
	}
}

func decode[T any](data []byte) (T, error) {
	var next T
	// Unmarshal takes null as "no change", which for a fresh T is every field zero: the reset a typo must not cause.
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return next, errors.New("decode JSON: null document")
	}
	if err := json.Unmarshal(data, &next); err != nil {
		return next, fmt.Errorf("decode JSON: %w", err)
	}
	if val, ok := any(&next).(Validator); ok {
		if err := val.Validate(); err != nil {
			return next, fmt.Errorf("validate: %w", err)
		}
	} else if val, ok := any(next).(Validator); ok {
		if err := val.Validate(); err != nil {
			return next, fmt.Errorf("validate: %w", err)
		}
	}
	return next, nil
}
