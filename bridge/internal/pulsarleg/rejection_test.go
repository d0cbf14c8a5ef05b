package pulsarleg

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestAMessageHeadersTakeOverPulsarsLimitIsARejection: a payload under the broker's max message size (5 MB, the shared
// server's default) whose properties take the message over it is refused by the client with an error that is no
// *pulsar.Error. isRejection took it for a transient failure, so leg B restarted the partition at that message for
// ever instead of dead-lettering it after BRIDGE_SINK_RETRIES: a record near a raised BRIDGE_MAX_MESSAGE_BYTES with
// large headers stalled its partition. The payload alone over the limit was, and is, a rejection.
func TestAMessageHeadersTakeOverPulsarsLimitIsARejection(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // the fault test restarts Pulsar: not under this test
	url, _ := testenv.Pulsar(t)
	c, err := pulsar.NewClient(pulsar.ClientOptions{URL: url, OperationTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.CreateProducer(pulsar.ProducerOptions{Topic: "persistent://public/default/bridgetest-rejection-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000000"),
		DisableBatching: true, SendTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range []struct {
		what    string
		payload int
		props   int
	}{
		{"payload under the limit, properties over it", 5<<20 - 1<<10, 30 << 10},
		{"payload over the limit", 5<<20 + 1, 0},
	} {
		_, err := p.Send(ctx, &pulsar.ProducerMessage{Payload: make([]byte, m.payload), Properties: map[string]string{"h": strings.Repeat("x", m.props)}})
		if err == nil {
			t.Fatalf("%s: Pulsar took it; the test needs the broker's max message size at 5 MB", m.what)
		}
		if !isRejection(err) {
			t.Errorf("%s: isRejection(%v) = false, want true: the partition would restart at it for ever", m.what, err)
		}
	}
}
