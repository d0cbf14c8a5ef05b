package discovery

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// EtcdLogger returns a logger for an etcd client (clientv3.Config{Logger: discovery.EtcdLogger(log)}) that writes
// through log. A client given none builds its own, which prints zap's JSON on stderr beside the program's structured
// logs: a call cancelled while a program starts or stops printed "retrying of unary invoker failed" on the terminal
// of make run. Records keep zap's level and fields and name the client as logger=etcd-client.
func EtcdLogger(log *slog.Logger) *zap.Logger {
	return zap.New(slogCore{log.Handler()}).Named("etcd-client")
}

// slogCore is a zap core writing each entry as an slog record to h. Written here because zap ships only the other
// direction (go.uber.org/zap/exp/zapslog, an slog handler over a zap core).
type slogCore struct{ h slog.Handler }

func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{c.h.WithAttrs(attrs(fields))}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default: // error, and zap's panic levels, whose panic or exit zap still does after the write
		return slog.LevelError
	}
}

// attrs turns zap fields into slog attributes, in key order (zap's map encoder keeps none).
func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	as := make([]slog.Attr, len(keys))
	for i, k := range keys {
		as[i] = slog.Any(k, enc.Fields[k])
	}
	return as
}
