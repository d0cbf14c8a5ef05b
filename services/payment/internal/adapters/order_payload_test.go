package adapters

import (
	"errors"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// TestDecodeOrderRefusesOnlyAmbiguousPayloads: a member named twice at the
// top level, in any spelling encoding/json would take for the same field,
// is invalid; the order service's own payloads, whose items repeat their
// member names from one item to the next, decode.
func TestDecodeOrderRefusesOnlyAmbiguousPayloads(t *testing.T) {
	const id = "0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a11"
	ok := []string{
		`{"order_id":"` + id + `","user_id":"alice","total_cents":300,"currency":"EUR",` +
			`"items":[{"sku":"A","quantity":1,"unit_price_cents":100},{"sku":"B","quantity":2,"unit_price_cents":100}]}`,
		`{"order_id":"` + id + `","user_id":"alice","total_cents":300,"currency":"EUR","user":"x","total":1}`,
	}
	for _, data := range ok {
		d, err := decodeOrder(event.Envelope{Type: OrderCreated, ID: "e", Data: []byte(data)})
		if err != nil || d.OrderID != id || d.TotalCents != 300 {
			t.Errorf("%s: got %+v, %v", data, d, err)
		}
	}
	ambiguous := []string{
		`{"total_cents":300,"total_cents":3}`,
		`{"total_cents":300,"Total_Cents":3}`,
		`{"user_id":"alice","uſer_id":"mallory"}`,
		`{"order_id":"a","order\u005fid":"b"}`,
		`{"x":1,"X":2}`,
	}
	for _, data := range ambiguous {
		if _, err := decodeOrder(event.Envelope{Type: OrderCreated, ID: "e", Data: []byte(data)}); !errors.Is(err, payment.ErrInvalid) {
			t.Errorf("%s: err = %v, want payment.ErrInvalid", data, err)
		}
	}
}
