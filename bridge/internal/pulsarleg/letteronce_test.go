package pulsarleg_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// letters is a DLQ that keeps what it is sent and says when the first letter came.
type letters struct {
	mu    sync.Mutex
	sent  []dlq.Letter
	first chan struct{}
	once  sync.Once
}

func (l *letters) Send(_ context.Context, letter dlq.Letter) error {
	l.mu.Lock()
	l.sent = append(l.sent, letter)
	l.mu.Unlock()
	l.once.Do(func() { close(l.first) })
	return nil
}

func (l *letters) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

// lateFailure makes producers that, the first fails times, fail their send of offset 0 and every send after it (as
// the client fails its whole ordered queue, say when the producer is closed under it), once the DLQ has its first
// letter: Pulsar failing a send after leg B went on past it and dead-lettered the message behind it.
type lateFailure struct {
	pulsar.Client
	dead  *letters
	fails int
	mu    sync.Mutex
}

func (c *lateFailure) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := c.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	return &lateFailingProducer{Producer: p, c: c}, nil
}

type lateFailingProducer struct {
	pulsar.Producer
	c      *lateFailure
	broken bool // only SendAsync's caller, leg B's feed, touches it
}

func (p *lateFailingProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	if *m.SequenceID == 0 && !p.broken {
		p.c.mu.Lock()
		if p.c.fails > 0 {
			p.c.fails--
			p.broken = true
		}
		p.c.mu.Unlock()
	}
	if !p.broken {
		p.Producer.SendAsync(ctx, m, cb)
		return
	}
	go func() {
		select {
		case <-p.c.dead.first:
		case <-time.After(10 * time.Second): // the letter never came: fail anyway, the test says why
		}
		cb(nil, m, errors.New("send failed (test)"))
	}()
}

// TestLegBDeadLettersAMessageOnce: leg B writes a dead letter while earlier sends may still wait for Pulsar; when one
// of those failed, the next session read the dead-lettered message again from the ack floor and wrote a second
// letter, once for every session that failed behind it. Offset 0's send fails twice after the message behind it (no
// kafka_offset: reason metadata) was dead-lettered; the message must be one letter, and offsets 0 and 2 archived.
func TestLegBDeadLettersAMessageOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dead := &letters{first: make(chan struct{})}
	o := e.opts
	o.DLQ, o.Pulsar = dead, &lateFailure{Client: e.pulsar, dead: dead, fails: 2}
	e.leg = pulsarleg.New(o)
	e.publish(t, 0, 0, 0, kafkaleg.MsgID(e.route.Topic, 0, 0))
	e.publishOn(t, e.route.PartitionSubject(0), 100, 0, 1, "no-offset", func(h nats.Header) { delete(h, kafkaleg.HeaderOffset) })
	e.publish(t, 2, 0, 2, kafkaleg.MsgID(e.route.Topic, 0, 2))
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()
	if recs := e.read(t, 3, 5*time.Second); len(recs) != 2 || recs[0].Offset != 0 || recs[1].Offset != 2 {
		t.Fatalf("archived %v, want offsets 0 and 2", recs)
	}
	if n := dead.count(); n != 1 {
		t.Fatalf("%d dead letters for the message without an offset, want 1", n)
	}
}
