package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
	"github.com/shanhai-dev/shanhai/pkg/outbox/kafkasize"
)

const instrumentation = "github.com/shanhai-dev/shanhai/pkg/outbox"

// Writer is what the relay publishes with; *kafka.Writer implements it. Tests wrap it to count or interrupt publishes.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// RelayOptions tune a Relay; the zero value gives the defaults documented on each field.
type RelayOptions struct {
	// Interval is the wait before the next poll after one that claimed rows (default 500ms); while polls find
	// nothing it grows up to MaxIdleInterval. Nudge skips the wait.
	Interval time.Duration
	// MaxIdleInterval caps the wait between polls while they find nothing (default 5s; not below Interval). Each empty
	// poll doubles the wait from Interval, and a poll that claims rows brings it back. A nudged row goes out at once
	// whatever the wait, and a row whose publish failed is polled for when its backoff ends (the relay remembers when
	// that is). What waits up to MaxIdleInterval is a row no Nudge announces and this relay did not fail: one another
	// process wrote, one a dead relay leased, or another replica's failed row. Polling every 500 ms cost each idle
	// service two PostgreSQL transactions a second (services/order/README.md, "Idle cost").
	MaxIdleInterval time.Duration
	// BatchSize is the most rows claimed and published per round (default 100).
	BatchSize int
	// MinBackoff and MaxBackoff bound the exponential wait before a failed row is retried (defaults 500ms and 1m).
	MinBackoff, MaxBackoff time.Duration
	// PublishTimeout bounds one round's publish, counted from the start of its claim (default 15s). On SQLite the
	// database write lock is held meanwhile.
	PublishTimeout time.Duration
	// Lease is how long a PostgreSQL claim reserves its rows for this relay (default PublishTimeout + 10s; a value not
	// above PublishTimeout takes the default). It must outlast the publish, so two relays never publish a row at once;
	// it is also how long the rows of a relay that died mid-round wait before another relay sends them again.
	Lease time.Duration
	// Retention keeps sent rows this long before Run deletes them (default 72h; negative keeps them forever).
	Retention time.Duration
	// CleanupBatch is the most rows one DELETE of Cleanup removes (default 1000). Cleanup deletes in such batches, each
	// its own statement and transaction, so a large backlog of sent rows is never one transaction holding its row
	// locks and WAL (or, on SQLite, the write lock the service's own writes need) until all of it is gone.
	CleanupBatch int
	// Logger for relay errors (default slog.Default()).
	Logger *slog.Logger
	// DelayFirstPoll makes Run wait one Interval (or a Nudge) before its first round, instead of claiming and
	// cleaning up at once. A starting service sets it: that first claim and the retention DELETE after it held
	// the pool's one connection while the service was becoming ready, so the first readiness check's database
	// ping had to open a second connection (4-7 ms). Rows a previous instance left wait one Interval longer;
	// rows written after the start are nudged out as usual.
	DelayFirstPoll bool
	// Linger is the least time between the starts of two rounds that claim rows (default 10ms; negative: none). While
	// rows keep coming, those committed within Linger of the last round share the next one instead of each nudge
	// starting a round of its own: at 250 rows/s on PostgreSQL and real Kafka a round carried 1.2-1.6 rows without
	// it and 2.8 with 10 ms, 5.1 with 20 ms (0.93, 0.70 and 0.50 produce requests a row; kafka-go sends one per
	// partition a round touches). It only helps where rounds are quicker than Linger: in the whole stack on the 2-core
	// test machine a round took 10-15 ms and already carried about 1.6 rows at 150 orders/s and 4 at 250, and in the
	// quietest interleaved pair there (e2e/cmd/cpuorder, 150/s) 10 ms changed neither PostgreSQL commits nor Kafka
	// requests per order. A row nudged after a quiet spell (no claiming round within Linger) goes out at once; one
	// committed right after a round waits up to Linger. A round that leaves rows behind (a full batch, or a key's next
	// row) is followed at once, as before.
	Linger time.Duration
}

func (o RelayOptions) withDefaults() RelayOptions {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.MaxIdleInterval <= 0 {
		o.MaxIdleInterval = 5 * time.Second
	}
	o.MaxIdleInterval = max(o.MaxIdleInterval, o.Interval)
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 15 * time.Second
	}
	if o.Lease <= o.PublishTimeout {
		o.Lease = o.PublishTimeout + 10*time.Second
	}
	if o.Retention == 0 {
		o.Retention = 72 * time.Hour
	}
	if o.CleanupBatch <= 0 {
		o.CleanupBatch = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Linger == 0 {
		o.Linger = 10 * time.Millisecond
	}
	return o
}

// Relay moves committed outbox rows to Kafka. Run one per replica; see the package doc for the guarantees.
type Relay struct {
	db     *gorm.DB
	w      Writer
	o      RelayOptions
	nudge  chan struct{}
	tracer trace.Tracer
	topics *kafkatopic.Creator // nil unless w is a *kafka.Writer; see write
	// clock is this process's wall clock (time.Now; a test sets it to stand for a replica whose clock is off).
	clock func() time.Time

	// retries are when the rows record failed and no round has claimed since come due (see retryAt): Run polls when
	// the earliest comes due instead of on its idle schedule. A slice, not a single time, so the later rows of a
	// failed batch are not forgotten once the first is retried; each round drops those due when it starts, so it
	// holds no more than the unsent rows this relay failed. Guarded by retryMu: RunOnce may record while Run does.
	retryMu sync.Mutex
	retries []time.Time

	meter     metric.Meter
	published metric.Int64Counter
	failed    metric.Int64Counter
	setAside  metric.Int64Counter
	lag       metric.Float64Histogram
	pending   metric.Int64ObservableGauge
	oldest    metric.Float64ObservableGauge
}

// NewRelay returns a relay reading db's outbox table and publishing with w. Build w with NewWriter, or make sure it
// has no Topic of its own (each message names its topic). A *kafka.Writer is switched to RequiredAcks=RequireAll:
// a row is marked sent only after every in-sync replica has it. With a *kafka.Writer the relay also creates each topic
// (with the broker's default partitions and replication) before its first publish to it: nothing else creates the
// services' topics outside the embedded run (scripts/deps.sh, compose and kind do not), and Kafka refuses the writer's
// first publish to a topic it has not got even where it creates topics on demand (see package kafkatopic). A topic
// that exists is left as it is; one deleted while the relay runs is created again after a publish to it failed.
func NewRelay(db *gorm.DB, w Writer, o RelayOptions) *Relay {
	r := &Relay{
		db:     db,
		w:      w,
		o:      o.withDefaults(),
		nudge:  make(chan struct{}, 1),
		tracer: otel.Tracer(instrumentation),
		clock:  time.Now,
	}
	if kw, ok := w.(*kafka.Writer); ok {
		kw.RequiredAcks = kafka.RequireAll
		r.topics = kafkatopic.New(kw, r.o.Logger)
	}
	m := otel.Meter(instrumentation)
	r.meter = m
	// Instrument creation only fails on invalid names; the returned no-op instruments keep the relay working.
	// Rows, not sends: a row Kafka took whose mark then failed is sent again by a later round, and counted by the
	// round that stores its outcome (see account). Sends show in Kafka's own metrics.
	r.published, _ = m.Int64Counter("outbox.messages.published",
		metric.WithDescription("Outbox rows published to Kafka and marked sent, each counted once however often it was sent."),
		metric.WithUnit("{message}"))
	r.failed, _ = m.Int64Counter("outbox.messages.failed",
		metric.WithDescription("Outbox publish attempts that failed and will be retried."), metric.WithUnit("{message}"))
	r.setAside, _ = m.Int64Counter("outbox.messages.set_aside",
		metric.WithDescription("Outbox rows that can never be sent (too large for Kafka, unreadable headers), marked sent with their error and kept."),
		metric.WithUnit("{message}"))
	r.lag, _ = m.Float64Histogram("outbox.lag",
		metric.WithDescription("Time from Add to the publish of a row marked sent, once per row."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	// The lag histogram only moves when something is published; these two show a relay that is stuck or gone.
	r.pending, _ = m.Int64ObservableGauge("outbox.pending",
		metric.WithDescription("Unsent outbox rows, read from the table at collection time."), metric.WithUnit("{message}"))
	r.oldest, _ = m.Float64ObservableGauge("outbox.pending.age",
		metric.WithDescription("Age of the oldest unsent outbox row (0 when none)."), metric.WithUnit("s"))
	return r
}

// NewWriter returns a kafka-go writer suited to the relay: acks from all in-sync replicas, murmur2 key hashing (the
// partition a Java producer would pick for the same key), and a short batch timeout because the relay already batches.
//
// The writer gets its own transport rather than kafka-go's process-wide default: the default caches cluster metadata
// for every client in the process and answers "unknown topic" for a topic created after its last refresh. Its Close
// closes that transport's connections and stops its metadata refresh.
//
// What a topic takes is the broker's decision (the topic's max.message.bytes), not the writer's: see writerBatchBytes.
func NewWriter(brokers ...string) *kafka.Writer {
	// kafka.NewWriter is the one way to a writer that owns its transport: Writer.Close closes the transport only
	// when NewWriter made it, never a Transport set in the struct, so a writer built as a literal with its own
	// Transport left that transport's connections open, and its metadata refresh running, after Close. kafka-go
	// keeps this constructor for compatibility (its comment expects to drop it in 1.0); until a kafka-go release
	// lets a literal own its transport, moving to one brings the leak back, and TestClosedWriterLeavesNoKafkaConnections
	// fails ("4 are still open after Close"). It panics on an empty broker list, so it is given a placeholder and Addr
	// is set after: with no brokers every write fails, as before.
	w := kafka.NewWriter(kafka.WriterConfig{
		Brokers:           []string{"set below"},
		RebalanceInterval: 5 * time.Second, // the transport's MetadataTTL
		IdleConnTimeout:   30 * time.Second,
	})
	w.Addr = kafka.TCP(brokers...)
	w.Balancer = &kafka.Murmur2Balancer{}
	w.RequiredAcks = kafka.RequireAll
	w.BatchTimeout = 2 * time.Millisecond
	w.BatchSize = 500
	w.BatchBytes = writerBatchBytes
	w.MaxAttempts = 3
	return w
}

// writerBatchBytes is NewWriter's BatchBytes. kafka-go closes a partition's batch when it reaches BatchSize messages
// or BatchBytes bytes (or BatchTimeout passes), and refuses outright, before sending anything, a message over
// BatchBytes, with the error the broker gives for its own limit. At kafka-go's default (1 MiB) the relay therefore
// set aside as too large for Kafka a row that its topic, configured to take more, would have taken. This is far above
// any topic's limit in practice, so the broker decides, and below the broker's default socket.request.max.bytes
// (100 MiB), past which it drops the connection instead of answering "too large" and the row would be retried forever.
// kafka-go then no longer keeps a partition's batch under a default topic's limit; Relay.write does (see callBytes).
const writerBatchBytes = 64 << 20

// Nudge asks a running relay to poll, e.g. right after a transaction that called Add committed: at once, or when
// Linger has passed since the start of the last round that claimed rows, so rows committed close together share a
// round. It never blocks.
func (r *Relay) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Run relays until ctx is done, then returns nil. Errors are logged and retried on the next tick.
func (r *Relay) Run(ctx context.Context) error {
	if reg, err := r.meter.RegisterCallback(r.observe, r.pending, r.oldest); err == nil {
		defer func() { _ = reg.Unregister() }()
	}
	wait := r.o.Interval
	t := time.NewTimer(wait)
	defer t.Stop()
	if r.o.DelayFirstPoll {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.nudge:
		}
	}
	var lastCleanup, lastClaim time.Time // lastClaim: when the last round that claimed rows started
	var cleanBefore time.Time            // the cutoff of a cleanup a round interrupted (zero: none under way)
	linger := time.NewTimer(r.o.Linger)
	linger.Stop()
	defer linger.Stop()
	for {
		if wait := time.Until(lastClaim.Add(r.o.Linger)); wait > 0 {
			linger.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-linger.C:
			}
		}
		claimedAny := false
		for {
			start := time.Now()
			claimed, more, err := r.round(ctx)
			claimedAny = claimedAny || claimed > 0
			if claimed > 0 {
				lastClaim = start
			}
			if err != nil {
				// A round that ended because the relay stopped is no failure; one that could not record or
				// release its rows on the way out is, as they now wait out their lease or are sent again.
				if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
					r.o.Logger.ErrorContext(ctx, "outbox relay round failed", "error", err)
				}
				if ctx.Err() != nil {
					return nil
				}
				break
			}
			if !more {
				break
			}
		}
		if r.o.Retention > 0 && cleanBefore.IsZero() && time.Since(lastCleanup) > r.o.Retention/24 {
			lastCleanup = time.Now()
			cleanBefore = time.Now().Add(-r.o.Retention)
		}
		if !cleanBefore.IsZero() {
			// At least one batch a pass, so rows nudged without pause do not stop the cleanup for good.
			_, done, err := r.cleanup(ctx, cleanBefore, r.roundWaiting)
			if err != nil && ctx.Err() == nil {
				r.o.Logger.ErrorContext(ctx, "outbox cleanup failed", "error", err)
			}
			if done || err != nil {
				cleanBefore = time.Time{}
			}
		}
		if claimedAny {
			wait = r.o.Interval
		} else {
			wait = min(2*wait, r.o.MaxIdleInterval)
		}
		// Only this wait is cut short: an idle relay keeps doubling from where it was, not from the retry's gap.
		t.Reset(r.untilRetry(wait))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.nudge:
		}
	}
}

// RunOnce claims up to BatchSize due rows, publishes them and records the outcome. It returns
// how many rows it claimed (published or failed); zero means nothing was due.
func (r *Relay) RunOnce(ctx context.Context) (claimed int, err error) {
	claimed, _, err = r.round(ctx)
	return claimed, err
}

// round is RunOnce that also says whether another round now would find rows: the batch was full, or a claimed row
// has a newer unsent row of its key, which the claim holds back until this one is marked sent (and not when every
// publish of the round failed; see allFailed). Run stops after a
// round without more instead of polling until a round comes back empty: an empty round after every batch was most
// of the relay's database work when rows arrive one by one. A row committed meanwhile is not missed: its writer's
// Nudge waits in the channel.
func (r *Relay) round(ctx context.Context) (claimed int, more bool, err error) {
	r.forgetRetriesDue(r.retryNow())
	if r.db.Dialector.Name() == "postgres" {
		claimed, more, err = r.leasedRound(ctx)
	} else {
		claimed, more, err = r.lockedRound(ctx)
	}
	if err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	return claimed, more, nil
}

// leasedRound is a PostgreSQL round in two autocommit statements: a claim that leases due rows to this relay for
// Lease (by pushing their next_attempt_at past it) and returns them, and after the publish one UPDATE that marks them
// sent. A transaction that held the rows' locks through the publish took four round trips (BEGIN, claim, mark,
// COMMIT) and a pooled connection for as long as Kafka took to answer. The lease keeps what the locks gave: a leased
// row is not due for any other relay until the publish has ended (its deadline is PublishTimeout after the claim
// started, Lease is longer), and a key's next row is not claimable while this one is unsent. The price is after a
// crash: rows a dead relay leased wait out the lease before another relay sends them again (at least once, as before).
//
// A stop (ctx ending) must not leave rows leased as a crash does, so only the publish is cut by it:
//   - The claim runs on. Cut, it lost its answer, not its effect: pgx drops the connection without cancelling the
//     statement, so PostgreSQL still committed the lease, and the rows waited it out (25 s) with no relay to send them.
//   - The publish is cut, since Kafka may take up to PublishTimeout (15 s), longer than a service's shutdown waits
//     (10 s). What it did not publish, or what was claimed when the stop came, is released: due again at once, with no
//     attempt counted. A row Kafka took before the cut is then sent twice, which at-least-once delivery allows.
//   - The outcome is recorded: rows Kafka took would otherwise be sent again once the lease ran out.
//
// Those statements get stopGrace after the stop, so a stop never hangs on an unreachable database; while the relay
// runs they have no timeout of their own, as a timeout that fires after PostgreSQL committed the claim strands its
// rows just as a cut does.
func (r *Relay) leasedRound(ctx context.Context) (claimed int, more bool, err error) {
	// The claim does not see ctx end, so a stopped relay must not start one.
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	start := time.Now()
	sctx, done := afterStop(ctx, stopGrace)
	defer done()
	db := r.db.WithContext(sctx)
	// The lease and the due test both read PostgreSQL's clock (pgNow), not this replica's: see nowSQL.
	rs, err := db.Raw(`UPDATE outbox o SET next_attempt_at = `+pgNow+` + ?
WHERE o.id IN (`+dueIDs(pgNow)+` FOR UPDATE SKIP LOCKED)
RETURNING `+claimColumns, r.o.Lease.Milliseconds(), r.o.BatchSize).Rows()
	if err != nil {
		return 0, false, fmt.Errorf("claim: %w", err)
	}
	rows, err := scanClaimed(rs)
	if err != nil {
		return 0, false, err
	}
	// RETURNING follows no ORDER BY; publish in id order as the locked round does.
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	msgs, more := r.batch(rows)
	claimed = len(msgs)
	if claimed == 0 {
		return 0, false, nil
	}
	if ctx.Err() != nil {
		// Stopped while claiming: a publish now would be cut at once.
		return claimed, false, r.release(db, msgs)
	}
	pctx, cancel := context.WithDeadline(ctx, start.Add(r.o.PublishTimeout))
	errs := r.publish(pctx, msgs)
	cancel()
	answered := time.Now()
	more = more && !allFailed(errs)
	var cut []Message
	if ctx.Err() != nil {
		// Only the stop cancels pctx before the publish returns; its deadline ends it with DeadlineExceeded.
		msgs, errs, cut = splitCut(msgs, errs)
	}
	// Until the lease ends, a statement of the record that fails is run again: Kafka has the rows, and left leased
	// they would go to Kafka again once the lease ran out.
	stored, err := r.record(db, msgs, errs, start.Add(r.o.Lease))
	// Each statement commits by itself: what record stored before one failed stays stored, and a row set aside is
	// never claimed again, so it is reported now or never.
	r.account(ctx, stored, answered)
	if err != nil {
		return claimed, false, err
	}
	return claimed, more, r.release(db, cut)
}

// forgetRetriesDue drops the retries due by now: the claim of a round starting now takes their rows. A row that a full
// batch left behind is claimed by a later round: one right after this if any publish of it succeeded, else one after
// Interval, as the round claimed rows.
func (r *Relay) forgetRetriesDue(now time.Time) {
	r.retryMu.Lock()
	defer r.retryMu.Unlock()
	r.retries = slices.DeleteFunc(r.retries, func(at time.Time) bool { return !at.After(now) })
}

// untilRetry returns wait, or the time until the earliest retry if that is sooner (negative if it is due already).
func (r *Relay) untilRetry(wait time.Duration) time.Duration {
	r.retryMu.Lock()
	defer r.retryMu.Unlock()
	if len(r.retries) == 0 {
		return wait
	}
	first := slices.MinFunc(r.retries, func(a, b time.Time) int { return a.Compare(b) })
	return min(wait, first.Sub(r.retryNow()))
}

// stopGrace is how long a round's statements may go on once the relay's context has ended.
const stopGrace = 5 * time.Second

// afterStop returns a context with ctx's values that ends grace after ctx does, and a func to call when done with it.
func afterStop(ctx context.Context, grace time.Duration) (context.Context, func()) {
	c := graceContext{Context: context.WithoutCancel(ctx), done: make(chan struct{})}
	var once sync.Once
	end := func() { once.Do(func() { close(c.done) }) }
	// Armed when ctx ends, unless the round is done by then; stopped when
	// it is done, so no round leaves a timer behind.
	var mu sync.Mutex
	finished := false
	timer := time.AfterFunc(grace, end)
	timer.Stop()
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			timer.Reset(grace)
		}
	})
	return c, func() {
		stop()
		mu.Lock()
		finished = true
		timer.Stop()
		mu.Unlock()
		end()
	}
}

// graceContext is afterStop's context. Once done it reports DeadlineExceeded, not Canceled: a statement that ran out
// of grace failed, and Run logs it, while a round the stop itself cut is no failure.
type graceContext struct {
	context.Context // the relay's context without its cancellation
	done            chan struct{}
}

func (c graceContext) Done() <-chan struct{} { return c.done }

func (c graceContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// splitCut takes the rows whose publish a stop cut (context.Canceled) out of msgs and errs.
func splitCut(msgs []Message, errs []error) (rest []Message, restErrs []error, cut []Message) {
	for i, m := range msgs {
		if errors.Is(errs[i], context.Canceled) {
			cut = append(cut, m)
			continue
		}
		rest = append(rest, m)
		restErrs = append(restErrs, errs[i])
	}
	return rest, restErrs, cut
}

// release ends the lease of rows a stopping relay claimed and did not publish: the next relay claims them at once,
// not after Lease. No attempt is counted and no error kept: Kafka refused nothing.
func (r *Relay) release(db *gorm.DB, rows []Message) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]int64, len(rows))
	for i, m := range rows {
		ids[i] = m.ID
	}
	now, args := r.nowSQL()
	if err := db.Exec("UPDATE outbox SET next_attempt_at = "+now+" WHERE id IN ?", append(args, ids)...).Error; err != nil {
		return fmt.Errorf("release %d claimed rows: %w", len(ids), err)
	}
	return nil
}

// lockedRound is a round in one transaction: claim, publish, record. On SQLite the transaction holds the database
// write lock throughout (BEGIN IMMEDIATE), which is what keeps two relays apart there.
//
// As in a leased round, a stop (ctx ending) cuts only the publish. The transaction runs on, for stopGrace at most: on
// ctx it was rolled back when the stop came, so rows Kafka had already taken stayed unsent and went out again in the
// next round. Rows whose publish the stop cut are left as they were, due with no attempt counted.
func (r *Relay) lockedRound(ctx context.Context) (claimed int, more bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	tctx, done := afterStop(ctx, stopGrace)
	defer done()
	var stored []outcome
	var answered time.Time
	err = r.db.WithContext(tctx).Transaction(func(tx *gorm.DB) error {
		rows, err := r.claim(tx)
		if err != nil {
			return err
		}
		var msgs []Message
		msgs, more = r.batch(rows)
		claimed = len(msgs)
		if claimed == 0 || ctx.Err() != nil {
			// Stopped while claiming: a publish now would be cut at once.
			more = false
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, r.o.PublishTimeout)
		errs := r.publish(pctx, msgs)
		cancel()
		answered = time.Now()
		more = more && !allFailed(errs)
		if ctx.Err() != nil {
			msgs, errs, _ = splitCut(msgs, errs)
		}
		stored, err = r.record(tx, msgs, errs, time.Time{}) // a failed statement has failed the transaction: no retry
		return err
	})
	if err == nil {
		// Only once committed: rolled back, the rows go to Kafka again next round and are counted then.
		r.account(ctx, stored, answered)
	}
	return claimed, more, err
}

// batch returns the claimed messages and whether a round right after this one would find more.
func (r *Relay) batch(rows []claimedRow) ([]Message, bool) {
	more := len(rows) == r.o.BatchSize
	msgs := make([]Message, len(rows))
	for i, c := range rows {
		msgs[i] = c.Message
		more = more || c.Followed
	}
	return msgs, more
}

// allFailed reports whether a round published none of its rows and set none aside: the broker is down or refusing
// everything. Then the next batch waits for the next poll: claimed at once it would wait out PublishTimeout again,
// and on SQLite hold the write lock the service's own writes need for as long, round after round. A row set aside
// (see unsendable) is done with, and its key's next row is claimable at once.
func allFailed(errs []error) bool {
	return !slices.ContainsFunc(errs, func(err error) bool { return err == nil || unsendable(err) })
}

// claimedRow is a claimed row and whether a newer unsent row of its topic and key waits behind it.
type claimedRow struct {
	Message
	Followed bool
}

// claimColumns are what a claim reads of each row o, in the order scanClaimed expects.
const claimColumns = `o.id, o.topic, o.key, o.event_id, o.event_type, o.headers, o.payload, o.created_at, o.attempts,
  EXISTS (SELECT 1 FROM outbox n
          WHERE n.sent_at IS NULL AND n.topic = o.topic AND n.key = o.key AND n.id > o.id) AS followed`

// dueIDs selects (arguments: those of now, then the batch size) the ids of due rows that are the oldest unsent row of
// their topic and key: what both kinds of round claim. now is the SQL of the current time in Unix ms (see nowSQL).
func dueIDs(now string) string {
	return `SELECT c.id FROM outbox c
WHERE c.sent_at IS NULL AND c.next_attempt_at <= ` + now + `
  AND NOT EXISTS (SELECT 1 FROM outbox p
                  WHERE p.sent_at IS NULL AND p.topic = c.topic AND p.key = c.key AND p.id < c.id)
ORDER BY c.id
LIMIT ?`
}

// pgNow is PostgreSQL's clock in Unix ms, the same all through one statement.
const pgNow = `(extract(epoch FROM statement_timestamp()) * 1000)::bigint`

// nowSQL returns the SQL of the current time in Unix ms that next_attempt_at is written and compared with, and its
// arguments. On PostgreSQL that is the database's clock: replicas on several hosts share the table, and a lease
// written by one clock and tested by another held only while the two were within Lease less PublishTimeout (10 s)
// of each other; a replica ahead by more claimed rows one behind was still publishing, and published them too. On
// SQLite every relay runs on the database's host, whose clock the process's is.
func (r *Relay) nowSQL() (string, []any) {
	if r.db.Dialector.Name() == "postgres" {
		return pgNow, nil
	}
	return "?", []any{r.clock().UnixMilli()}
}

// claim reads the due rows inside a locked round's transaction, which already holds SQLite's write lock (BEGIN
// IMMEDIATE).
func (r *Relay) claim(tx *gorm.DB) ([]claimedRow, error) {
	now, args := r.nowSQL()
	rs, err := tx.Raw(`SELECT `+claimColumns+` FROM outbox o WHERE o.id IN (`+dueIDs(now)+`) ORDER BY o.id`,
		append(args, r.o.BatchSize)...).Rows()
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return scanClaimed(rs)
}

// scanClaimed reads and closes the rows of a claim. Scanned by hand: the columns are fixed, and gorm's Scan would
// look the struct's fields up by reflection every round.
func scanClaimed(rs *sql.Rows) ([]claimedRow, error) {
	defer rs.Close()
	var rows []claimedRow
	for rs.Next() {
		var c claimedRow
		if err := rs.Scan(&c.ID, &c.Topic, &c.Key, &c.EventID, &c.EventType, &c.Headers, &c.Payload, &c.CreatedAt,
			&c.Attempts, &c.Followed); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		rows = append(rows, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return rows, nil
}

// publish sends rows (see write), within ctx's deadline, and returns one error (or nil) per row.
func (r *Relay) publish(ctx context.Context, rows []Message) []error {
	msgs := make([]kafka.Message, len(rows))
	spans := make([]trace.Span, len(rows))
	errs := make([]error, len(rows))
	prop := otel.GetTextMapPropagator()
	// kafka-go sends a zero Time as timestamp 0 (1970), which time-based retention reads as long expired and which
	// tells a consumer nothing; the record time is when the relay hands the row to Kafka, as a Java producer would set it.
	at := time.Now()
	for i, m := range rows {
		stored, err := readHeaders(m.Headers)
		if err != nil {
			errs[i] = fmt.Errorf("row %d: %w", m.ID, err)
			continue
		}
		// The producer span is a child of the context Add stored, not of the relay's loop: the trace reads
		// request -> handler -> publish -> consumers, however long the row waited.
		parent := prop.Extract(context.Background(), propagation.MapCarrier(stored))
		sctx, span := r.tracer.Start(parent, m.Topic+" publish",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.message.id", m.EventID),
				attribute.String("messaging.kafka.message.key", m.Key),
				attribute.String("cloudevents.event_id", m.EventID),
				attribute.String("cloudevents.event_type", m.EventType),
				attribute.Int("outbox.attempt", m.Attempts+1),
			))
		spans[i] = span
		for _, f := range prop.Fields() {
			delete(stored, f)
		}
		prop.Inject(sctx, propagation.MapCarrier(stored))
		msgs[i] = kafka.Message{Topic: m.Topic, Key: []byte(m.Key), Value: m.Payload, Headers: headers(stored), Time: at}
	}

	// Rows with unreadable headers are not sent; the others go out together.
	var send []kafka.Message
	var idx []int
	for i := range rows {
		if errs[i] == nil {
			send = append(send, msgs[i])
			idx = append(idx, i)
		}
	}
	if len(send) > 0 {
		for j, err := range r.write(ctx, send) {
			errs[idx[j]] = err
		}
	}

	// Failed attempts are counted here, each one; a row published or set aside is counted by account, once its
	// outcome is stored.
	for i, m := range rows {
		attrs := metric.WithAttributes(attribute.String("messaging.destination.name", m.Topic))
		if unsendable(errs[i]) {
			// Set aside (account).
		} else if errors.Is(errs[i], context.Canceled) && ctx.Err() != nil {
			// The stop cut this publish: the round releases the row with no attempt recorded, so it is no failed
			// attempt either (counting it made a clean shutdown look like Kafka refusing rows).
		} else if errs[i] != nil {
			r.failed.Add(ctx, 1, attrs)
			if spans[i] != nil {
				spans[i].RecordError(errs[i])
				spans[i].SetStatus(codes.Error, "publish failed")
			}
		}
		if spans[i] != nil {
			spans[i].End()
		}
	}
	return errs
}

// outcome is a row whose end record stored: published and marked sent (err nil), or set aside (err says why it
// can never be sent; see unsendable).
type outcome struct {
	m   Message
	err error
}

// account counts the rows a round published (and their lag from Add to answered, when Kafka answered) and logs and
// counts those it set aside. It is given the outcomes record stored (all of a leased round's statements that
// succeeded, a locked round's once committed), not the rows Kafka answered for: a row whose mark failed is sent again
// by a later round, and counting each send made outbox.messages.published (and set_aside, lag and the set-aside ERROR)
// count one row twice.
func (r *Relay) account(ctx context.Context, stored []outcome, answered time.Time) {
	for _, o := range stored {
		m := o.m
		attrs := metric.WithAttributes(attribute.String("messaging.destination.name", m.Topic))
		if o.err == nil {
			r.published.Add(ctx, 1, attrs)
			// CreatedAt is the clock of the replica that called Add: one ahead of this one made the lag negative,
			// and a histogram's sum then went down (a counter reset to Prometheus).
			r.lag.Record(ctx, max(0, answered.Sub(m.CreatedAt).Seconds()), attrs)
			continue
		}
		r.setAside.Add(ctx, 1, attrs)
		r.o.Logger.ErrorContext(ctx, "outbox row can never be sent, set aside unpublished",
			"topic", m.Topic, "event_id", m.EventID, "id", m.ID, "payload_bytes", len(m.Payload), "error", o.err)
	}
}

// callBytes bounds what Relay.write puts in one WriteMessages call, counted by callSize. NewWriter's writer closes a
// partition's batch only at 64 MiB (writerBatchBytes), so a round's call made batches over what a topic at the
// broker's default limit takes (max.message.bytes 1,048,588 bytes, a batch's 61-byte header included); the broker
// refused each whole and write sent every row of it again alone, round after round (60 rows of 60 KB on a
// 3-partition topic: 61 calls instead of 1). A call within callBytes has every partition batch within that limit, so
// mid-sized rows go out a few calls a round; a row over callBytes goes in a call of its own, and its topic's limit
// decides whether Kafka takes it. (kafka-go joins two calls in a batch only when they overlap on one writer, which
// write's calls never do; should another caller's overlap, a refused batch's rows still go again alone.)
//
// Splitting the calls here was preferred to going back to kafka-go's default BatchBytes and resending the rows its
// check refuses through a second writer with a large one: that second writer has to be built from the caller's
// (only when it is a *kafka.Writer, not a wrapped one) and closed by a relay that does not own writers. The price is
// a few more calls a round for a topic configured to take more than the default.
const callBytes = 1_000_000

// callSize is at most what m adds to a partition batch in Kafka's record format (v2): its key, value and headers,
// and their framing: the record's varint length, attributes, timestamp and offset deltas, key and value lengths and
// header count (36 bytes at most), and each header's two varint lengths (10 at most).
func callSize(m kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 36
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// write sends msgs in calls of at most callBytes each, in order, and returns one error (or nil) per message. Calls
// after ctx ended are not made: their messages fail with ctx's error, as a call cut by it would (a stop's rows are
// released, a deadline's retried), without a publish whose outcome is unknown.
//
// A topic of msgs the relay has not published to before is created first, if missing, in one request for them all:
// a row for it then goes out in this round instead of failing (see NewRelay). The relay asks about each topic once,
// or again in later rounds while Kafka does not answer, and again after a publish to it found it missing (deleted
// while the relay runs): one request a round at most, rounds for a failed row spaced by its backoff.
func (r *Relay) write(ctx context.Context, msgs []kafka.Message) []error {
	if r.topics != nil && len(msgs) > 0 {
		topics := make([]string, len(msgs))
		for i, m := range msgs {
			topics[i] = m.Topic
		}
		r.topics.Ensure(ctx, topics...)
	}
	errs := make([]error, 0, len(msgs))
	for start := 0; start < len(msgs); {
		end, size := start+1, callSize(msgs[start])
		for end < len(msgs) && size+callSize(msgs[end]) <= callBytes {
			size += callSize(msgs[end])
			end++
		}
		if err := ctx.Err(); err != nil {
			for range msgs[start:end] {
				errs = append(errs, err)
			}
		} else {
			errs = append(errs, r.writeCall(ctx, msgs[start:end])...)
		}
		start = end
	}
	if r.topics != nil {
		for i, err := range errs {
			if kafkatopic.Missing(err) {
				r.topics.Forget(msgs[i].Topic) // deleted since it was created: the next round creates it again
			}
		}
	}
	return errs
}

// writeCall sends msgs in one call and returns one error (or nil) per message.
//
// kafka-go sends a call as one batch per partition, and the broker takes or refuses each batch whole. When it refuses
// one for its size, the others were taken: kafka-go reports them as nil entries of a kafka.WriteErrors, and they are
// published; sending them again put them on Kafka twice. A message refused for its size is sent again alone, as its
// batch may have been too large only together; it is too large for Kafka when refused alone. kafka-go's own check
// (kafka.MessageTooLargeError, a message over the writer's BatchBytes) refuses a call before anything is sent, so
// its messages go again alone too. Sending rows of a round apart keeps each key's order: a round holds one row of each
// key at most (only a key's oldest unsent row is claimed), which is also why write may split a round into calls.
//
// kafka-go also refuses a whole call before sending any of it when the broker refuses one of its topics (one that
// does not exist and that Kafka would not create, a name Kafka never takes: a kafka.Error outside a
// kafka.WriteErrors). The rows of the call's other
// topics are not to blame, and recording that error against them kept them unpublished, in backoff, for as long as
// the refused row came due with them: so a call over several topics refused this way is sent again one topic a call.
func (r *Relay) writeCall(ctx context.Context, msgs []kafka.Message) []error {
	errs := make([]error, len(msgs))
	err := r.w.WriteMessages(ctx, msgs...)
	var werrs kafka.WriteErrors
	var kerr kafka.Error
	switch {
	case err == nil:
		return errs
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		copy(errs, werrs)
	case errors.As(err, &kerr) && !oneTopic(msgs):
		return r.writeByTopic(ctx, msgs)
	default:
		for i := range errs {
			errs[i] = err
		}
	}
	if len(msgs) > 1 {
		for i, err := range errs {
			if kafkasize.TooLarge(err) {
				errs[i] = r.w.WriteMessages(ctx, msgs[i])
			}
		}
	}
	return errs
}

// oneTopic reports whether every message of msgs is for the same topic.
func oneTopic(msgs []kafka.Message) bool {
	for _, m := range msgs[1:] {
		if m.Topic != msgs[0].Topic {
			return false
		}
	}
	return true
}

// writeByTopic sends msgs in one call per topic, in order of each topic's first message, and returns one error (or
// nil) per message. As in write, calls after ctx ended are not made.
func (r *Relay) writeByTopic(ctx context.Context, msgs []kafka.Message) []error {
	var topics []string
	byTopic := map[string][]int{}
	for i, m := range msgs {
		if _, ok := byTopic[m.Topic]; !ok {
			topics = append(topics, m.Topic)
		}
		byTopic[m.Topic] = append(byTopic[m.Topic], i)
	}
	errs := make([]error, len(msgs))
	for _, topic := range topics {
		idx := byTopic[topic]
		if err := ctx.Err(); err != nil {
			for _, i := range idx {
				errs[i] = err
			}
			continue
		}
		group := make([]kafka.Message, len(idx))
		for j, i := range idx {
			group[j] = msgs[i]
		}
		for j, err := range r.writeCall(ctx, group) {
			errs[idx[j]] = err
		}
	}
	return errs
}

// record marks published rows sent and pushes failed rows back with a capped, jittered exponential backoff (which
// also ends a lease). tx is the round's transaction, or the database itself for a leased round, whose statements are
// each run again until retryUntil when they fail (see exec; zero: no retry). It returns the rows set aside or marked
// sent by the statements that succeeded, also with an error: in a leased round each statement commits by itself, so
// a row set aside before the mark failed stays set aside, and is never claimed again.
func (r *Relay) record(tx *gorm.DB, rows []Message, errs []error, retryUntil time.Time) ([]outcome, error) {
	now := time.Now().UTC()
	var stored []outcome
	var sent []int64
	for i, m := range rows {
		if errs[i] == nil {
			sent = append(sent, m.ID)
			continue
		}
		if unsendable(errs[i]) {
			// Retrying cannot help, and as its key's oldest unsent row it would hold the key's later rows back
			// forever. Set aside: sent_at ends its turn, last_error says it was never published, Cleanup keeps it.
			err := r.exec(tx, retryUntil, "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
				now, truncate("set aside, not published: "+errs[i].Error(), 1000), m.ID)
			if err != nil {
				return stored, fmt.Errorf("set aside row %d: %w", m.ID, err)
			}
			stored = append(stored, outcome{m: m, err: errs[i]}) // logged and counted by account
			continue
		}
		wait := r.backoff(m.Attempts + 1)
		dbNow, nowArgs := r.nowSQL()
		err := r.exec(tx, retryUntil, "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = "+dbNow+" + ? WHERE id = ?",
			append(append([]any{truncate(errs[i].Error(), 1000)}, nowArgs...), wait.Milliseconds(), m.ID)...)
		if err != nil {
			return stored, fmt.Errorf("record failure of row %d: %w", m.ID, err)
		}
		// Remembered even if a locked round's transaction then rolls back: that costs one poll finding nothing.
		r.retryMu.Lock()
		r.retries = append(r.retries, r.retryAt(wait))
		r.retryMu.Unlock()
		r.logFailure(tx.Statement.Context, m, errs[i])
	}
	if len(sent) > 0 {
		err := r.exec(tx, retryUntil, "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = '' WHERE id IN ?", now, sent)
		if err != nil {
			return stored, fmt.Errorf("mark %d rows sent: %w", len(sent), err)
		}
		for i, m := range rows {
			if errs[i] == nil {
				stored = append(stored, outcome{m: m})
			}
		}
	}
	return stored, nil
}

// retryAt is when the relay polls for a row it failed with a backoff of wait, read once the statement that set the
// row's next_attempt_at returned, on the clock next_attempt_at is written in (see nowSQL).
//
// On PostgreSQL that clock is the database's, which a step of this process's wall clock (NTP stepping it, a VM
// resumed) does not move: the poll is this process's monotonic clock plus wait, no sooner than the row is due by the
// database's as long as the two run at the same rate (PostgreSQL rounds its reading to the nearest millisecond, and
// wait to whole milliseconds is no longer than wait). A wall-clock time stepped forward by an hour made the poll an
// hour early: that round claimed nothing and forgot the retry, and the row waited for the idle poll, up to
// MaxIdleInterval; stepped back, the poll came late by as much (up to the idle wait).
//
// On SQLite the clock is this process's wall clock, so a step moves the row's due time with it: the poll is that
// clock plus wait, rounded up to the millisecond (next_attempt_at truncates it), a time with no monotonic reading.
// A PostgreSQL whose clock steps (on this host, say) still moves its rows' due times away from the polls: a poll comes
// early or late by the step, and the row waits up to MaxIdleInterval more.
func (r *Relay) retryAt(wait time.Duration) time.Time {
	if r.db.Dialector.Name() == "postgres" {
		return time.Now().Add(wait)
	}
	at := r.clock().Add(wait)
	ms := at.UnixMilli()
	if time.UnixMilli(ms).Before(at) {
		ms++
	}
	return time.UnixMilli(ms)
}

// retryNow is the clock retryAt's times are read on: the monotonic on PostgreSQL, the wall clock on SQLite (a time
// with no monotonic reading compares by the wall clock).
func (r *Relay) retryNow() time.Time {
	if r.db.Dialector.Name() == "postgres" {
		return time.Now()
	}
	return r.clock()
}

// logFailure logs a failed attempt of row m at its 1st, 2nd, 4th, 8th... attempt only. A row is retried until Kafka
// takes it, for ever if need be (setting it aside, as a row too large is, would leave every row of a topic whose ACL
// an operator then fixes to be replayed by hand), and a line per attempt was one a minute per row at the backoff's cap:
// thousands a minute for a topic with that many rows waiting. Every attempt is still counted (outbox.messages.failed)
// and its error kept in last_error; outbox.pending and outbox.pending.age show the rows waiting. A refusal no retry
// mends by itself (a kafka.Error kafka-go does not call temporary: an ACL, a compacted topic refusing a keyless
// record) is logged at ERROR, as it needs someone to act.
func (r *Relay) logFailure(ctx context.Context, m Message, err error) {
	attempt := m.Attempts + 1
	if attempt&(attempt-1) != 0 {
		return
	}
	args := []any{"topic", m.Topic, "event_id", m.EventID, "id", m.ID, "attempt", attempt, "next_logged_attempt", 2 * attempt,
		"error", err}
	var kerr kafka.Error
	if errors.As(err, &kerr) && !kerr.Temporary() {
		r.o.Logger.ErrorContext(ctx, "outbox publish refused by Kafka: retried until the broker takes it", args...)
		return
	}
	r.o.Logger.WarnContext(ctx, "outbox publish failed", args...)
}

// exec runs one of record's statements on db. One that fails is run again, after 50 ms doubling to 1 s, until
// retryUntil or until db's context ends (a stop's grace): on PostgreSQL the pool takes another connection, so the
// database ending one (a failover, a pooler restart, pg_terminate_backend) costs a retry, not a publish. Run again
// after a failure whose commit was lost with the connection, it only counts one attempt too many.
func (r *Relay) exec(db *gorm.DB, retryUntil time.Time, sql string, args ...any) error {
	wait := 50 * time.Millisecond
	for {
		err := db.Exec(sql, args...).Error
		if err == nil || time.Now().Add(wait).After(retryUntil) {
			return err
		}
		ctx := db.Statement.Context
		if ctx.Err() != nil {
			return err
		}
		r.o.Logger.WarnContext(ctx, "outbox relay: recording a round's outcome failed, trying again", "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// backoff is MinBackoff*2^(attempt-1) capped at MaxBackoff, with "equal jitter" (half fixed, half random) so
// replicas retrying the same failure spread out but never retry sooner than half the nominal wait.
func (r *Relay) backoff(attempt int) time.Duration {
	d := r.o.MaxBackoff
	if attempt < 31 {
		if e := r.o.MinBackoff << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// observe reports the backlog when metrics are collected (a scrape), not on every poll.
func (r *Relay) observe(ctx context.Context, o metric.Observer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	db := r.db.WithContext(ctx)
	var n int64
	if err := db.Raw("SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&n).Error; err != nil {
		return fmt.Errorf("outbox backlog: %w", err)
	}
	// Read the oldest row's column rather than min(created_at): SQLite returns an aggregate's time as plain text.
	var oldest []time.Time
	err := db.Raw("SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1").Scan(&oldest).Error
	if err != nil {
		return fmt.Errorf("outbox backlog: %w", err)
	}
	age := 0.0
	if len(oldest) == 1 {
		age = max(0, time.Since(oldest[0]).Seconds())
	}
	o.ObserveInt64(r.pending, n)
	o.ObserveFloat64(r.oldest, age)
	return nil
}

// Cleanup deletes rows sent before the given time and returns how many. Rows set aside unpublished (sent_at with a
// last_error) are kept: they are the only copy of their event.
//
// It deletes RelayOptions.CleanupBatch rows a statement until a statement finds fewer, so each transaction stays
// short; rows deleted before an error or the end of ctx stay deleted and are counted. On PostgreSQL a batch skips
// rows another replica's Cleanup holds (SKIP LOCKED) rather than wait for them. Run's own cleanup lets a round go
// between two batches when a Nudge or a failed row's retry is waiting (see roundWaiting).
func (r *Relay) Cleanup(ctx context.Context, before time.Time) (int64, error) {
	n, _, err := r.cleanup(ctx, before, func() bool { return false })
	return n, err
}

// cleanup is Cleanup that also returns after a full batch when yield says so, with done false: the rest is for a
// later call.
func (r *Relay) cleanup(ctx context.Context, before time.Time, yield func() bool) (total int64, done bool, err error) {
	total, done, err = r.cleanupSweep().Run(ctx, r.db, yield, before.UTC())
	if err != nil {
		return total, false, fmt.Errorf("outbox cleanup: %w", err)
	}
	return total, done, nil
}

// roundWaiting reports whether a round is due before Run's cleanup goes on: a Nudge waits, or a retry has come due.
// Run's wait then ends at once, and the cleanup goes on after the round; a backlog of sent rows (100k took about 1 s
// in batches of 1000 on the shared PostgreSQL) no longer holds back a row nudged meanwhile until its last batch. A row
// no Nudge announces (another process wrote it) waits for the cleanup as it waits for the idle poll.
func (r *Relay) roundWaiting() bool {
	return len(r.nudge) > 0 || r.untilRetry(time.Hour) <= 0
}

// cleanupSweep is Cleanup's batched delete: published rows sent before its one argument, set-aside rows kept.
func (r *Relay) cleanupSweep() database.Sweep {
	return database.Sweep{
		Table: "outbox", Key: "id", Batch: r.o.CleanupBatch,
		Where: "sent_at IS NOT NULL AND sent_at < ? AND last_error = ''",
	}
}

// errHeaders marks a row whose stored headers are not a JSON object of strings. Add never writes one; a row written
// by hand or damaged in the table is, and no retry mends it.
var errHeaders = errors.New("headers not a JSON object of strings")

// readHeaders reads a row's stored headers. JSON null is refused too: json.Unmarshal makes it a nil map, and the
// propagator's Inject into that panicked the relay.
func readHeaders(s string) (map[string]string, error) {
	var h map[string]string
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("%w: %w", errHeaders, err)
	}
	if h == nil {
		return nil, fmt.Errorf("%w: %.20q", errHeaders, s)
	}
	return h, nil
}

// unsendable reports whether a row's publish failed in a way no retry mends: too large for Kafka, or headers that
// cannot be read. Such a row is set aside (see record) rather than retried for ever ahead of its key's later rows.
func unsendable(err error) bool { return kafkasize.TooLarge(err) || errors.Is(err, errHeaders) }

// headers turns a header map into Kafka headers in a stable (sorted) order.
func headers(m map[string]string) []kafka.Header {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hs := make([]kafka.Header, len(keys))
	for i, k := range keys {
		hs[i] = kafka.Header{Key: k, Value: []byte(m[k])}
	}
	return hs
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
