package event_test

import (
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/event"
)

// An order.created as the order service writes it: what the bridge checks
// (FromHeaders) and payment decodes for every order.
var (
	benchHeaders = map[string]string{
		"ce_specversion": "1.0", "ce_id": "0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a11", "ce_type": "order.created",
		"ce_source": "/shanhai/order", "ce_subject": "0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a12",
		"ce_time": "2026-12-06T23:00:00.123456789Z", "content-type": "application/json",
	}
	benchData = []byte(`{"order_id":"0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a12","user_id":"0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a13",` +
		`"total_cents":4350,"currency":"EUR","items":[{"sku":"TEA-GREEN-100G","quantity":2,"unit_price_cents":1200},` +
		`{"sku":"CUP-PORCELAIN","quantity":1,"unit_price_cents":1950}]}`)
)

type benchOrder struct {
	OrderID    string `json:"order_id"`
	UserID     string `json:"user_id"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
	Items      []struct {
		SKU            string `json:"sku"`
		Quantity       int    `json:"quantity"`
		UnitPriceCents int64  `json:"unit_price_cents"`
	} `json:"items"`
}

// BenchmarkFromHeaders is the envelope check the bridge makes on every record.
func BenchmarkFromHeaders(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.FromHeaders(benchHeaders, benchData); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is a consumer's reading of the payload.
func BenchmarkDecode(b *testing.B) {
	e, err := event.FromHeaders(benchHeaders, benchData)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var o benchOrder
		if err := e.Decode(&o); err != nil {
			b.Fatal(err)
		}
	}
}
