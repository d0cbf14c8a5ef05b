package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func decodeLine(t *testing.T, b *bytes.Buffer) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, b.String())
	}
	b.Reset()
	return m
}

func TestLoggerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	ctx = WithAttrs(ctx, slog.String("request_id", "r-1"))

	log.With("component", "test").InfoContext(ctx, "hello", "n", 1)
	m := decodeLine(t, &buf)
	for k, want := range map[string]any{
		"msg": "hello", "trace_id": tid.String(), "span_id": sid.String(),
		"request_id": "r-1", "component": "test", "n": float64(1), "level": "INFO",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v (line %v)", k, m[k], want, m)
		}
	}

	log.Info("no context")
	m = decodeLine(t, &buf)
	if _, ok := m["trace_id"]; ok {
		t.Errorf("record without a span has trace_id: %v", m)
	}

	log.DebugContext(ctx, "below level")
	if buf.Len() != 0 {
		t.Errorf("debug record written at info level: %s", buf.String())
	}
}

func TestWithAttrsDoesNotLeakBetweenContexts(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo)
	base := WithAttrs(context.Background(), slog.String("a", "1"))
	one := WithAttrs(base, slog.String("b", "2"))
	_ = WithAttrs(base, slog.String("c", "3"))
	log.InfoContext(one, "x")
	m := decodeLine(t, &buf)
	if m["a"] != "1" || m["b"] != "2" || m["c"] != nil {
		t.Errorf("attrs = %v, want a=1 b=2 and no c", m)
	}
}

type attrTestKey struct{}

// TestWithAttrsContext: the context WithAttrs returns is its parent plus
// the attributes: the parent's values, deadline and cancellation.
func TestWithAttrsContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), attrTestKey{}, "v"))
	ctx := WithAttrs(parent, slog.String("request_id", "r1"))
	if ctx.Value(attrTestKey{}) != "v" {
		t.Fatal("the parent's values are lost")
	}
	if a := Attrs(ctx); len(a) != 1 || a[0].Key != "request_id" || a[0].Value.String() != "r1" {
		t.Fatalf("Attrs = %v", a)
	}
	if Attrs(parent) != nil {
		t.Fatal("the parent has attributes")
	}
	if s := ctx.(interface{ String() string }).String(); !strings.HasSuffix(s, ".WithAttrs") {
		t.Fatalf("String() = %q", s)
	}
	cancel()
	<-ctx.Done()
	if ctx.Err() != context.Canceled {
		t.Fatalf("Err() = %v after the parent was cancelled", ctx.Err())
	}
}
