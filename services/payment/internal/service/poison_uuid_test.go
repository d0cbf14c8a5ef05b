package service_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestOrderIDThatIsNoUUIDIsDeadLetteredOnce: order ids are the order
// service's UUIDs (lower-case, canonical: uuid.NewString), and order
// terminates a payment result naming any other without applying it. A
// payment for such an id would charge the customer for an order that does
// not exist, with nothing on the order side to compensate it. A very long
// one also failed the UNIQUE order_id index on every delivery, and then the
// dead letter's own order_id index, so it was lost unrecorded.
func TestOrderIDThatIsNoUUIDIsDeadLetteredOnce(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxDeliver = 3 })
	long := make([]byte, 2500)
	_, _ = rand.Read(long)
	order := func(id string) orderEvent {
		return orderEvent{OrderID: id, UserID: "alice", TotalCents: 100, Currency: "EUR"}
	}
	poisonedOnce(t, h, []struct {
		typ string
		o   orderEvent
	}{
		{"order.created", order("order-1")},
		{"order.created", order(strings.ToUpper(uuid.NewString()))},
		{"order.created", order("urn:uuid:" + uuid.NewString())},
		{"order.created", order(hex.EncodeToString(long))},
		{"order.cancelled", order("order-2")},
	})
}
