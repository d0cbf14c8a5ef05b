package pulsarleg_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBCountsAStoreConfirmedAfterTheSessionFailed: offsets 0-2 are stored by Pulsar, but their receipts reach leg B
// only after offset 3's send failed and ended the session. Leg B counted nothing for them, and their resends in the
// next session were dropped by the broker's dedup and counted "duplicate": three messages archived once each and
// counted only as duplicates (ok 1, duplicate 3). Every receipt that says stored now counts "ok", whenever it comes:
// ok is what the archive holds (4), duplicate the 3 replays.
func TestLegBCountsAStoreConfirmedAfterTheSessionFailed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	o := e.opts
	o.Metrics, o.Pulsar = m, &lateClient{Client: e.pulsar, failAt: 3}
	e.leg = pulsarleg.New(o)
	e.publishOffsets(t, 0, 3)
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()
	if recs := e.read(t, 5, 5*time.Second); len(recs) != 4 {
		t.Fatalf("archived %d, want offsets 0-3 once", len(recs))
	}
	wantResults(t, reader, map[string]int64{"ok": 4, "duplicate": 3})
}

// wantResults checks leg B's bridge_messages_total by result.
func wantResults(t *testing.T, r sdkmetric.Reader, want map[string]int64) {
	t.Helper()
	for result, n := range want {
		if got, _, err := harness.Int64Metric(r, "bridge.messages", "result", result); err != nil || got != n {
			t.Errorf("bridge_messages_total{leg=nats-pulsar,result=%q} = %d (%v), want %d", result, got, err, n)
		}
	}
}

// lateClient's first producer sends offsets below failAt to Pulsar but holds their receipts; at offset failAt it
// waits for them, fails that offset (not sent) and then hands the held receipts on: stored messages whose
// confirmations arrive after a failure, as when a session fails with sends in flight. All answers are given before
// SendAsync returns, so before the session's feed can end and its drain start. Later producers pass everything.
type lateClient struct {
	pulsar.Client
	failAt int64
	made   atomic.Bool
}

func (c *lateClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := c.Client.CreateProducer(o)
	if err != nil || c.made.Swap(true) {
		return p, err
	}
	return &lateProducer{Producer: p, failAt: c.failAt}, nil
}

type lateProducer struct {
	pulsar.Producer
	failAt int64
	held   sync.WaitGroup
	mu     sync.Mutex
	late   []func()
}

func (p *lateProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	if *m.SequenceID < p.failAt {
		p.held.Add(1)
		p.Producer.SendAsync(ctx, m, func(id pulsar.MessageID, m *pulsar.ProducerMessage, err error) {
			p.mu.Lock()
			p.late = append(p.late, func() { cb(id, m, err) })
			p.mu.Unlock()
			p.held.Done()
		})
		return
	}
	p.held.Wait()
	cb(nil, m, errors.New("send of offset "+strconv.FormatInt(*m.SequenceID, 10)+" failed (test)"))
	p.mu.Lock()
	late := p.late
	p.late = nil
	p.mu.Unlock()
	for _, answer := range late {
		answer()
	}
}
