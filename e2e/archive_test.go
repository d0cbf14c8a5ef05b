package e2e

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
)

// Archive topics the bridge writes (docs/conventions.md).
var archiveTopics = []string{
	"persistent://shanhai/events/shanhai.orders",
	"persistent://shanhai/events/shanhai.payments",
}

// archive reads the Pulsar archive through a subscription made before the
// run's first order. A reader from the earliest message would be the simpler
// tool, but the namespace keeps no retention: what no subscription holds may
// be trimmed (a Pulsar restart does it), so the test holds one from the start.
// Other runs share these topics; events are matched by order id.
type archive struct {
	mu     sync.Mutex
	events []archived
}

type archived struct {
	Topic   string
	Props   map[string]string
	OrderID string
}

func openArchive(t *testing.T, url string) *archive {
	t.Helper()
	cli, err := pulsar.NewClient(pulsar.ClientOptions{URL: url, OperationTimeout: 30 * time.Second, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatalf("pulsar client: %v", err)
	}
	cons, err := cli.Subscribe(pulsar.ConsumerOptions{
		Topics:                      archiveTopics,
		SubscriptionName:            "e2e-" + randomHex(4),
		Type:                        pulsar.Exclusive,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionLatest,
	})
	if err != nil {
		cli.Close()
		t.Fatalf("subscribe to the Pulsar archive %v: %v", archiveTopics, err)
	}
	a := &archive{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := cons.Receive(ctx)
			if err != nil {
				return
			}
			var data struct {
				OrderID string `json:"order_id"`
			}
			_ = json.Unmarshal(m.Payload(), &data)
			a.mu.Lock()
			a.events = append(a.events, archived{Topic: m.Topic(), Props: m.Properties(), OrderID: data.OrderID})
			a.mu.Unlock()
			_ = cons.Ack(m)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cons.Unsubscribe()
		cons.Close()
		cli.Close()
	})
	return a
}

// find returns the archived event of this type for the order, waiting up to d.
func (a *archive) find(orderID, ceType string, d time.Duration) (archived, bool) {
	deadline := time.Now().Add(d)
	for {
		a.mu.Lock()
		for _, e := range a.events {
			if e.OrderID == orderID && e.Props["ce_type"] == ceType {
				a.mu.Unlock()
				return e, true
			}
		}
		a.mu.Unlock()
		if time.Now().After(deadline) {
			return archived{}, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
