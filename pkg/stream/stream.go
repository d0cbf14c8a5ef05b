// Package stream holds what every JetStream consumer in the platform shares:
// the stream's names, the subject of each Kafka partition and the filters
// that read a whole topic, creating the stream when absent, the redelivery
// back-off, keeping a message the consumer holds (queued or being handled)
// from being redelivered (Keeper), the header form that event.FromHeaders
// reads and the bound on a termination's reason (ClipReason). Order and
// payment consume from the same stream the bridge writes, so these rules
// live in one place.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream stream that carries every platform event subject
// (docs/conventions.md).
const (
	Name     = "SHANHAI"
	Subjects = "shanhai.>"
)

// Names are the JetStream names a consumer uses. Empty fields take the
// platform's defaults (Or); tests pass private names so they never share a
// stream or durable with a service running on the same server.
type Names struct {
	Stream         string // default SHANHAI
	StreamSubjects string // default shanhai.>
	Subject        string // the topic's subject; a consumer filters on Filters(Subject)
	Durable        string // the durable consumer name
}

// Or fills the empty fields of n from def.
func (n Names) Or(def Names) Names {
	if n.Stream == "" {
		n.Stream = def.Stream
	}
	if n.StreamSubjects == "" {
		n.StreamSubjects = def.StreamSubjects
	}
	if n.Subject == "" {
		n.Subject = def.Subject
	}
	if n.Durable == "" {
		n.Durable = def.Durable
	}
	return n
}

// MaxAge is how long the stream keeps a message, whoever creates it: the
// bridge creates it with the same limit when it starts first (a stream
// without one kept every event until JetStream's store was full and refused
// the saga's publishes). A week outlasts any outage the consumers recover
// from; a busier platform sets MaxBytes on the stream as well.
const MaxAge = 7 * 24 * time.Hour

// Ensure creates the stream when it is absent and leaves an existing one
// alone: the bridge, order and payment all call this at start, and whoever
// comes first defines it; nobody silently rewrites another's settings.
func Ensure(ctx context.Context, js jetstream.JetStream, n Names) error {
	_, err := js.Stream(ctx, n.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up stream %s: %w", n.Stream, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      n.Stream,
		Subjects:  []string{n.StreamSubjects},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		// The bridge sets Nats-Msg-Id = topic/partition/offset/topic id; this window
		// drops a re-published Kafka record that arrives within it.
		Duplicates: 2 * time.Minute,
		MaxAge:     MaxAge,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", n.Stream, err)
	}
	return nil
}

// BackOff is a consumer's redelivery schedule: first, then double the step
// before, up to 16 × first, which later redeliveries repeat. A message that
// is not settled, whether its handler failed and left it so or its process
// died, is delivered again after the step of its delivery count. It has
// fewer steps than maxDeliver, as JetStream requires (at least one).
//
// Handlers that fail leave the message unsettled rather than nak it: a
// plain nak is redelivered at once, and nats-server (2.14.9; 2.15.2's
// consumer code is the same) sets AckWait to the first step and, on a nak
// with delay d, restarts the message's ack timer as if it had started
// AckWait − d ago, then waits the back-off step: a nak on delivery k comes
// back after d + BackOff[k-1] − BackOff[0] (the last step past the end),
// neither schedule. Steps of 1, 5, 30 s and delays of 1, 2, 4, 8, 16 s gave
// gaps of 1, 6, 33, 37, 45 s.
func BackOff(first time.Duration, maxDeliver int) []time.Duration {
	steps := make([]time.Duration, max(1, min(5, maxDeliver-1)))
	for i := range steps {
		steps[i] = first << i
	}
	return steps
}

// Headers flattens NATS headers to the first value of each key, which is the
// form event.FromHeaders reads.
func Headers(h map[string][]string) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			m[k] = v[0]
		}
	}
	return m
}
