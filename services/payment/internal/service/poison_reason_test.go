package service_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestInvalidOrderWithAHugeReasonIsDeadLetteredOnce: the reason of a dead
// letter quotes what the event carried (%q), and quoting can triple it: a
// currency of 300,000 U+0085 (a control character, 600 kB in the JSON) is
// quoted as 1.8 MB of \u0085. The termination sends the reason to the
// server, which refuses a message over its max_payload (1 MB): the message
// stayed unsettled and was recorded as dead again on every delivery.
func TestInvalidOrderWithAHugeReasonIsDeadLetteredOnce(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxDeliver = 3 })
	poisonedOnce(t, h, []struct {
		typ string
		o   orderEvent
	}{
		{"order.created", orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 100, Currency: strings.Repeat("\u0085", 300_000)}},
		{"order.cancelled", orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 100, Currency: strings.Repeat("\u0085", 300_000)}},
	})
}
