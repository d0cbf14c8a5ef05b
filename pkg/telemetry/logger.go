package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON logger whose records carry trace_id and span_id
// when logged with a context holding a span (slog.InfoContext(ctx, ...)), and
// any attributes added to the context with WithAttrs (the server adds
// request_id). That is what lets a log line be found from a trace and back.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

// NewHandler wraps any slog handler with the trace and context attributes.
func NewHandler(next slog.Handler) slog.Handler {
	return &handler{next: next}
}

type handler struct {
	next slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
		if a := Attrs(ctx); len(a) > 0 {
			r.AddAttrs(a...)
		}
	}
	return h.next.Handle(ctx, r)
}

// With* keep the wrapper so derived loggers still add trace ids. Under a
// group the ids land inside that group; keeping them top-level would mean
// re-implementing grouping here, and groups are rare in this code base.
func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{next: h.next.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name)}
}

type attrsKey struct{}

// attrsCtx is a context holding the attributes WithAttrs added, with room
// for one inline: adding one (the server's request_id, on every request)
// costs one allocation of 80 bytes, where context.WithValue with the
// attributes behind a pointer took two (48 and 112). More attributes, which
// nothing in Shanhai adds per request, go to a slice of their own.
type attrsCtx struct {
	context.Context // the parent
	inline          [1]slog.Attr
	all             []slog.Attr
}

// Value answers attrsKey with c; every other key goes to the parent.
func (c *attrsCtx) Value(key any) any {
	if key == (attrsKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// String names the context as context.WithValue's do (they print their
// parents), instead of fmt printing every field of the chain.
func (c *attrsCtx) String() string { return fmt.Sprint(c.Context) + ".WithAttrs" }

// Attrs returns the attributes WithAttrs added to ctx (do not modify them).
func Attrs(ctx context.Context) []slog.Attr {
	if a, ok := ctx.Value(attrsKey{}).(*attrsCtx); ok {
		return a.all
	}
	return nil
}

// WithAttrs returns a context whose log records (through a NewLogger logger)
// carry attrs in addition to those already in ctx.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev := Attrs(ctx)
	c := &attrsCtx{Context: ctx}
	if n := len(prev) + len(attrs); n <= len(c.inline) {
		c.all = c.inline[:0:n]
	} else {
		c.all = make([]slog.Attr, 0, n)
	}
	c.all = append(append(c.all, prev...), attrs...)
	return c
}
