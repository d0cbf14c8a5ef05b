package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// sdkLogger is the logger the OpenTelemetry SDK writes its own messages
// to (otel.SetLogger): log's handler, so they are the service's JSON
// records with its fields, named logger=opentelemetry. Left alone, the SDK
// printed them as plain text on stderr (its default, a standard library
// log.Logger), beside the JSON every other line is: a metric stream two
// instruments defined differently, a span's attribute limit reached.
// Its warnings held back are counted in warnings, which the provider's
// Shutdown flushes.
func sdkLogger(log *slog.Logger, warnings *repeats) logr.Logger {
	return logr.FromSlogHandler(sdkLevels{log.Handler(), warnings}).WithName("opentelemetry")
}

// sdkLevels gives the SDK's verbosities their slog levels. logr's bridge
// maps V(n) to slog level -n, so the SDK's warnings (V(1)) came out at a
// level below Info and were dropped by a logger at Info. OpenTelemetry's
// convention (otel.SetLogger) is V(1) Warn, V(4) Info and V(8) Debug. Its
// Info is a provider's configuration when it is made, a few lines a start:
// Debug here, as a service's Info says what the service did. Its Debug is
// every export and every collection with all its data (a /metrics scrape
// is one): sdkTrace, below any LOG_LEVEL, or debug logging would be
// flooded. Errors come at slog's Error level already.
//
// Its warnings stay Warn, as one says something is wrong, but one of a
// kind is written once a minute (repeats): the SDK warns of a limit
// reached ("dropping trace Span attributes", events, links) once per span,
// so a handler over the limit wrote one line per request.
type sdkLevels struct {
	next    slog.Handler
	repeats *repeats
}

// sdkTrace is the level of the SDK's Debug messages: under slog.LevelDebug,
// the lowest a service's LOG_LEVEL sets.
const sdkTrace = slog.LevelDebug - 4

func sdkLevel(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelInfo:
		return l
	case l > -4: // V(1) to V(3)
		return slog.LevelWarn
	case l > -8: // V(4) to V(7)
		return slog.LevelDebug
	default:
		return sdkTrace
	}
}

func (h sdkLevels) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, sdkLevel(l))
}

func (h sdkLevels) Handle(ctx context.Context, r slog.Record) error {
	r.Level = sdkLevel(r.Level)
	if r.Level == slog.LevelWarn {
		n, ok := h.repeats.admit(h.next, r)
		if !ok {
			return nil
		}
		if n > 0 {
			r.AddAttrs(slog.Int("suppressed", n))
		}
	}
	return h.next.Handle(ctx, r)
}

func (h sdkLevels) WithAttrs(as []slog.Attr) slog.Handler {
	return sdkLevels{h.next.WithAttrs(as), h.repeats}
}

func (h sdkLevels) WithGroup(name string) slog.Handler {
	return sdkLevels{h.next.WithGroup(name), h.repeats}
}

// repeatKinds bounds the kinds of warning repeats remembers. The SDK's
// warnings are a handful of fixed messages; a bound keeps a message
// carrying, say, an instrument's name from growing the map without end.
// Full, it forgets the kinds that have nothing to say (see forget); when
// none can go, a new kind is written every time, as before.
const repeatKinds = 256

// repeats writes one warning of a kind (its message and attributes) per
// every, and counts the ones it held back, for the next one written or, if
// the kind goes quiet, for flush.
type repeats struct {
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	kinds map[string]*repeat
	// sweep is the earliest time forget can find a kind to drop: before
	// it, forget looks at none. Full, every new kind's warning called
	// forget, and one whose kinds all hold a count, or were all written in
	// the last minute, looked at each of the 256 under mu for nothing,
	// warning after warning.
	sweep time.Time
}

type repeat struct {
	last       time.Time
	suppressed int
	// held is the last warning held back and next the handler it came to:
	// what flush writes the count on.
	held slog.Record
	next slog.Handler
}

func newRepeats(every time.Duration, now func() time.Time) *repeats {
	return &repeats{every: every, now: now, kinds: make(map[string]*repeat)}
}

// admit reports whether r is written, and how many of its kind were held
// back since the last one written.
func (p *repeats) admit(next slog.Handler, r slog.Record) (suppressed int, ok bool) {
	var key strings.Builder
	key.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		key.WriteString("\x00" + a.String())
		return true
	})
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	k, seen := p.kinds[key.String()]
	switch {
	case !seen && len(p.kinds) >= repeatKinds && !p.forget(now):
		return 0, true
	case !seen:
		p.kinds[key.String()] = &repeat{last: now}
		return 0, true
	case now.Sub(k.last) < p.every:
		k.suppressed++
		k.held, k.next = r.Clone(), next
		return 0, false
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	return n, true
}

// forget drops the kinds last written an every or more before now with
// none held back since: their next one is written anyway, with nothing to
// count. A kind holding a count is kept, so that its next line says it.
// Without this, the bound once reached stayed reached for the life of the
// process, however long those kinds had been quiet. It reports whether
// any kind went.
//
// A kind kept becomes one to drop an every after its last line at the
// earliest, and one holding a count only an every after its next line,
// which comes no sooner than now, as do the kinds added later: forget
// looks again at that earliest time (sweep), not at the next warning. So
// it looks at the kinds once per expiry at most, not once per warning.
func (p *repeats) forget(now time.Time) bool {
	if now.Before(p.sweep) {
		return false
	}
	n := len(p.kinds)
	p.sweep = now.Add(p.every)
	for key, k := range p.kinds {
		switch expires := k.last.Add(p.every); {
		case k.suppressed > 0:
		case !now.Before(expires):
			delete(p.kinds, key)
		case expires.Before(p.sweep):
			p.sweep = expires
		}
	}
	return len(p.kinds) < n
}

// flush writes each count held back once, on a line of its kind at the
// time of the flush, and forgets every kind. A kind that went quiet wrote
// its count only with its next warning, which never came, so the last
// minute of warnings before an exit was lost; the provider's Shutdown
// calls it after its exporters stop, which may warn too.
func (p *repeats) flush(ctx context.Context) error {
	p.mu.Lock()
	var held []*repeat
	for key, k := range p.kinds {
		if k.suppressed > 0 {
			held = append(held, k)
		}
		delete(p.kinds, key)
	}
	p.sweep = time.Time{}
	p.mu.Unlock()
	now := p.now()
	var errs []error
	for _, k := range held {
		r := k.held
		r.Time = now
		r.AddAttrs(slog.Int("suppressed", k.suppressed))
		if err := k.next.Handle(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("held-back SDK warning: %w", err))
		}
	}
	return errors.Join(errs...)
}
