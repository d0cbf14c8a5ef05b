package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/periodic"
	"github.com/shanhai-dev/shanhai/pkg/stream"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/outage"
)

// jsErrStreamSubjectOverlap is the JetStream API error code of a stream whose
// subjects overlap another stream's (nats-server's JSStreamSubjectOverlapErr);
// nats.go's jetstream package has no constant for it.
const jsErrStreamSubjectOverlap jetstream.ErrorCode = 10065

// errRefused marks the errors that stop the bridge at start rather than
// being retried: a stream leg A must not publish to, or cannot have.
var errRefused = errors.New("refusing to start")

// EnsureStream creates the stream if absent (file storage, the configured
// subjects and duplicate window, and the services' stream.MaxAge: whoever
// starts first defines it), retrying until NATS answers or ctx ends.
//
// An existing stream is left as it is: order, payment and operators create
// or tune it too, and nobody rewrites another's settings (stream.Ensure).
// But leg A relies on its duplicate window: a message JetStream stored but
// did not confirm in time is published again up to 2 × PublishTimeout +
// MaxBackoff later (config.Validate's rule for the window the bridge creates),
// and a window no longer than that stores it twice. Raising the window here
// instead would be a silent rewrite of a shared setting, by a
// read-modify-write that could undo an operator's concurrent edit. So with
// leg A on, an existing stream whose window is too short is a
// *ShortWindowError, which stops the bridge, rather than duplicates in the
// stream and the archive.
//
// A stream of another name holding subjects that overlap the configured ones
// is an *OverlapError: JetStream refuses to create the bridge's stream for as
// long as that one exists, and retrying (as the bridge did, every second, for
// ever, while leg A carried nothing) only hid it. Retried errors (NATS not
// answering yet) are logged when they first occur or change, and a minute after, not each second.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg config.Config, log *slog.Logger) error {
	retries := &outage.Log{Logger: log, Level: slog.LevelWarn, Repeat: time.Minute, Attrs: []any{"stream", cfg.Stream},
		Failing: "jetstream stream not ready; retrying every second", Ended: "jetstream stream ready after failed attempts"}
	for {
		s, err := js.Stream(ctx, cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{
				Name: cfg.Stream, Subjects: cfg.StreamSubjects, Storage: jetstream.FileStorage,
				Duplicates: cfg.DuplicateWindow, MaxAge: stream.MaxAge,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				// Created meanwhile by someone else: check theirs.
				continue
			}
			if err == nil {
				retries.OK()
				return nil
			}
			if api := (*jetstream.APIError)(nil); errors.As(err, &api) && api.ErrorCode == jsErrStreamSubjectOverlap {
				return overlapping(ctx, js, cfg, err)
			}
		}
		if err == nil {
			retries.OK()
			return checkWindow(cfg, s.CachedInfo().Config.Duplicates)
		}
		retries.Fail(err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// checkWindow is the rule EnsureStream applies to an existing stream's
// duplicate window: with leg A on it must exceed 2 × PublishTimeout + MaxBackoff.
func checkWindow(cfg config.Config, have time.Duration) error {
	need := 2*cfg.PublishTimeout + cfg.MaxBackoff
	if cfg.LegA() && have <= need {
		return &ShortWindowError{Stream: cfg.Stream, Window: have, Need: need}
	}
	return nil
}

// ShortWindowError is an existing stream whose duplicate window does not
// outlast leg A's republish of an unconfirmed message.
type ShortWindowError struct {
	Stream string
	Window time.Duration // the stream's duplicate window
	Need   time.Duration // 2 × BRIDGE_PUBLISH_TIMEOUT + BRIDGE_MAX_BACKOFF, which the window must exceed
}

func (e *ShortWindowError) Error() string {
	return fmt.Sprintf("jetstream stream %s has a duplicate window of %s, which must exceed 2 × BRIDGE_PUBLISH_TIMEOUT + BRIDGE_MAX_BACKOFF (%s): "+
		"a message stored but not confirmed in time would be stored twice; raise the stream's duplicate window (nats stream edit %s --dupe-window) "+
		"or lower those two", e.Stream, e.Window, e.Need, e.Stream)
}

// OverlapError is the bridge's stream refused because streams of other names
// already hold subjects overlapping BRIDGE_STREAM_SUBJECTS.
type OverlapError struct {
	Stream   string
	Subjects []string
	// Others are the overlapping streams by name, with their subjects; empty
	// when listing them failed too (Err says why JetStream refused).
	Others map[string][]string
	Err    error // JetStream's refusal
}

func (e *OverlapError) Error() string {
	var others []string
	for _, name := range slices.Sorted(maps.Keys(e.Others)) { // by name: the same refusal reads the same at each start
		others = append(others, fmt.Sprintf("%s (subjects %s)", name, strings.Join(e.Others[name], ", ")))
	}
	if len(others) == 0 {
		others = []string{"another stream"}
	}
	return fmt.Sprintf("jetstream stream %s with subjects %s cannot be created: %s already holds overlapping subjects (%v); "+
		"set BRIDGE_STREAM to that stream, or BRIDGE_STREAM_SUBJECTS to subjects no other stream holds",
		e.Stream, strings.Join(e.Subjects, ", "), strings.Join(others, "; "), e.Err)
}

func (e *OverlapError) Unwrap() error { return e.Err }

// overlapping names the streams whose subjects overlap cfg's (JetStream's
// refusal does not), asking for the streams that hold each configured subject.
func overlapping(ctx context.Context, js jetstream.JetStream, cfg config.Config, refusal error) error {
	e := &OverlapError{Stream: cfg.Stream, Subjects: cfg.StreamSubjects, Others: map[string][]string{}, Err: refusal}
	for _, subject := range cfg.StreamSubjects {
		list := js.ListStreams(ctx, jetstream.WithStreamListSubject(subject))
		for info := range list.Info() {
			if info.Config.Name != cfg.Stream {
				e.Others[info.Config.Name] = info.Config.Subjects
			}
		}
		if err := list.Err(); err != nil {
			e.Err = errors.Join(refusal, fmt.Errorf("listing the streams on %s: %w", subject, err))
		}
	}
	return e
}

// streamCheck reads the settings of the stream leg A publishes to, for readiness and every streamCheckInterval on
// its own: EnsureStream checks the duplicate window only at start, and an operator may shrink it on the server later.
// A too short window is logged when the verdict changes (not at every reading), set as bridge_stream_window_short,
// and fails readiness. It does not stop the bridge: the stream still takes every message, and a replay later than
// the window is stored twice, which leg B archives once.
//
// Why a check of its own and not only the /readyz probe: a bridge nobody polls (run by hand, or by a supervisor that
// watches only the process) did not notice at all, and the gauge and the log line are what an alert and an operator
// read. A read that fails (NATS away, the stream deleted) says nothing about the window: it fails readiness but
// leaves the verdict, the gauge and the log alone, as leg A and the NATS connection log those themselves.
type streamCheck struct {
	js     jetstream.JetStream
	cfg    config.Config
	short  outage.Log       // the window's verdict: failing while too short
	window func(short bool) // records the verdict (bridge_stream_window_short); nil records nothing
}

// streamCheckInterval is how often the bridge reads its stream's settings between probes: a window shrunk by an
// operator is not urgent (only a replay later than it is stored twice), and a stream info request is cheap.
const streamCheckInterval = 30 * time.Second

func newStreamCheck(js jetstream.JetStream, cfg config.Config, log *slog.Logger, window func(short bool)) *streamCheck {
	return &streamCheck{js: js, cfg: cfg, window: window, short: outage.Log{
		Logger: log, Level: slog.LevelError, Attrs: []any{"stream", cfg.Stream},
		Failing: "jetstream stream's duplicate window became too short; a late republish is stored twice",
		Ended:   "jetstream stream's duplicate window is long enough again",
	}}
}

// watch probes every interval until ctx ends; the probe logs and records what it finds.
func (c *streamCheck) watch(ctx context.Context, every time.Duration) {
	periodic.Run(ctx, every, every, func(ctx context.Context) { _ = c.probe(ctx) })
}

func (c *streamCheck) probe(ctx context.Context) error {
	s, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return fmt.Errorf("jetstream stream %s: %w", c.cfg.Stream, err)
	}
	err = checkWindow(c.cfg, s.CachedInfo().Config.Duplicates)
	if err != nil {
		c.short.Fail(err)
	} else {
		c.short.OK()
	}
	if c.window != nil {
		c.window(err != nil)
	}
	return err
}
