package kafkaleg_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegARepublishesWithinTheSmallestWindowConfigAccepts: a failed session restarts only once every publish still
// in flight has its outcome, so a message stored whose confirmation never came is published again up to two publish
// timeouts after its first publish (the last one in flight was published just before its timeout), plus the restart
// backoff. config required BRIDGE_DUPLICATE_WINDOW to exceed one timeout plus the backoff, which let such a replay
// past the window, and the stream stored the message twice. Here the timeout is 2 s and the backoff at most 1 s (the
// test leg's): config accepted a window of 3.5 s, and offset 1, stored but unconfirmed, was published again about 4 s
// after it, behind offset 2 (leg A also logged its stream order violated).
func TestLegARepublishesWithinTheSmallestWindowConfigAccepts(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	e := setup(t, 1)
	cf := e.streamCf
	cf.Duplicates = smallestWindowAccepted(t, timeout, time.Second)
	if _, err := e.js.UpdateStream(context.Background(), cf); err != nil {
		t.Fatal(err)
	}
	// Offset 0 is confirmed (a session sends one message at a time until one is). Offsets 1 and 2 are stored but
	// their confirmations are lost; 2 is published 1.7 s after 1, while 1 waits for its confirmation: as if it came
	// shortly before 1 timed out.
	e.js = &lostConfirmations{JetStream: e.js, timeout: timeout, lose: map[string]time.Duration{"1": 0, "2": 1700 * time.Millisecond}}
	lost := e.js.(*lostConfirmations)
	produce(t, e, []kafka.Message{harness.Event(0, 1, 50), harness.Event(1, 1, 50), harness.Event(2, 1, 50)})
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	// Each record once: the replay of offset 1 is within the window only if it outlasts two timeouts. Counted once
	// both were published again and the group committed the end, so JetStream has answered every publish.
	waitStream(t, e, 3)
	for deadline := time.Now().Add(30 * time.Second); !lost.republished(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("offsets 1 and 2 were not published again")
		}
	}
	waitCommittedEnds(t, e, group, 1)
	info, err := e.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("the stream holds %d messages for 3 records: a replay came after the duplicate window %s, the smallest config accepts (timeout %s, backoff at most 1s)",
			info.State.Msgs, cf.Duplicates, timeout)
	}
}

// smallestWindowAccepted is the smallest BRIDGE_DUPLICATE_WINDOW, in steps of a second from 3.5 s, that config
// accepts with the given BRIDGE_PUBLISH_TIMEOUT and BRIDGE_MAX_BACKOFF.
func smallestWindowAccepted(t *testing.T, timeout, backoff time.Duration) time.Duration {
	t.Helper()
	var c config.Config
	if err := pkgconfig.Load(&c); err != nil {
		t.Fatal(err)
	}
	c.PublishTimeout, c.MaxBackoff = timeout, backoff
	for c.DuplicateWindow = 3500 * time.Millisecond; c.DuplicateWindow < time.Minute; c.DuplicateWindow += time.Second {
		if c.Validate() == nil {
			return c.DuplicateWindow
		}
	}
	t.Fatalf("config accepts no BRIDGE_DUPLICATE_WINDOW under a minute with BRIDGE_PUBLISH_TIMEOUT=%s and BRIDGE_MAX_BACKOFF=%s", timeout, backoff)
	return 0
}

// lostConfirmations is a JetStream that stores the first publish of each offset in lose, that much later, but loses
// its confirmation: the publish fails timeout after it was sent, as jetstream's own async timeout does. Other
// publishes pass through.
type lostConfirmations struct {
	jetstream.JetStream
	timeout time.Duration
	lose    map[string]time.Duration

	mu    sync.Mutex
	sent  map[string]int
	again int
}

func (j *lostConfirmations) republished() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.again >= 2
}

func (j *lostConfirmations) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	id := m.Header.Get(kafkaleg.HeaderOffset)
	j.mu.Lock()
	if j.sent == nil {
		j.sent = map[string]int{}
	}
	j.sent[id]++
	n := j.sent[id]
	if n > 1 {
		j.again++
	}
	j.mu.Unlock()
	delay, lose := j.lose[id]
	if n == 1 && lose {
		time.Sleep(delay)
	}
	inner, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || n > 1 || !lose {
		return inner, err
	}
	f := &lateRefusal{PubAckFuture: inner, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	time.AfterFunc(j.timeout, func() { f.err <- errors.New("nats: timeout (confirmation lost)") })
	return f, nil
}
