package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
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
// answering yet) are logged when they first occur or change, not each second.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg config.Config, log *slog.Logger) error {
	var logged string
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
				return nil
			}
			if api := (*jetstream.APIError)(nil); errors.As(err, &api) && api.ErrorCode == jsErrStreamSubjectOverlap {
				return overlapping(ctx, js, cfg, err)
			}
		}
		if err == nil {
			return checkWindow(cfg, s.CachedInfo().Config.Duplicates)
		}
		if err.Error() != logged {
			log.Warn("jetstream stream not ready; retrying every second", "stream", cfg.Stream, "err", err)
			logged = err.Error()
		}
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

// streamCheck is the readiness probe of the stream leg A publishes to. It
// reads the stream's settings each time, so it also sees a duplicate window
// shrunk on the server after the start (EnsureStream's check runs only then),
// and logs such a change once, when the verdict changes, not at every probe.
// It does not stop the bridge: the stream still takes every message, and a
// replay later than the window is stored twice, which leg B archives once.
type streamCheck struct {
	js  jetstream.JetStream
	cfg config.Config
	log *slog.Logger

	mu    sync.Mutex
	short bool // the last reading was a ShortWindowError
}

func (c *streamCheck) probe(ctx context.Context) error {
	s, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return fmt.Errorf("jetstream stream %s: %w", c.cfg.Stream, err)
	}
	err = checkWindow(c.cfg, s.CachedInfo().Config.Duplicates)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch short := err != nil; {
	case short && !c.short:
		c.log.Error("jetstream stream's duplicate window became too short; a late republish is stored twice", "err", err)
	case !short && c.short:
		c.log.Info("jetstream stream's duplicate window is long enough again", "stream", c.cfg.Stream)
	}
	c.short = err != nil
	return err
}
