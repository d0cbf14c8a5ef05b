package service_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
)

// TestPayloadNamingAFieldTwiceIsDeadLetteredOnce: encoding/json takes the
// last of two members with one name, and matches names without regard to
// case (and folds U+017F ſ to s), so a payload that names total_cents
// twice was charged the second amount, while a reader that takes the first
// (many do) or the Pulsar archive's consumers saw another order. The order
// service marshals its events and never writes such a payload: it is
// forged or corrupt, refused on its first delivery, neither charged nor
// cancelled.
func TestPayloadNamingAFieldTwiceIsDeadLetteredOnce(t *testing.T) {
	h := newHarness(t, nil)
	var events []rawEvent
	add := func(typ, format string) {
		id := uuid.NewString()
		events = append(events, rawEvent{typ: typ, orderID: id, data: fmt.Sprintf(format, id)})
	}
	add("order.created", `{"order_id":%q,"user_id":"alice","total_cents":100,"total_cents":99999,"currency":"EUR"}`)
	add("order.created", `{"order_id":%q,"user_id":"alice","total_cents":100,"currency":"EUR","TOTAL_CENTS":99999}`)
	add("order.created", `{"order_id":%q,"user_id":"alice","uſer_id":"mallory","total_cents":100,"currency":"EUR"}`)
	add("order.created", `{"order_id":%q,"user_id":"alice","total_cents":100,"currency":"EUR","currenc\u0079":"USD"}`)
	add("order.cancelled", `{"order_id":%q,"user_id":"alice","total_cents":100,"Total_Cents":5,"currency":"EUR"}`)
	poisonedRawOnce(t, h, events)
}
