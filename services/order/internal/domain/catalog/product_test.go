package catalog

import (
	"strings"
	"testing"
)

// TestCheck: Check passes a catalogue to price orders from and names the
// first product that is not one, as the Redis cache logs it.
func TestCheck(t *testing.T) {
	tea := Product{SKU: "TEA", Name: "Tea", PriceCents: 1890, Currency: "EUR"}
	ink := Product{SKU: "INK", Name: "Ink", PriceCents: 1, Currency: "CNY"} // one cent is allowed
	if err := Check([]Product{tea, ink}); err != nil {
		t.Fatalf("a good catalogue: %v", err)
	}
	if err := Check(nil); err != nil {
		t.Fatalf("no products (the caller refuses an empty catalogue): %v", err)
	}
	for want, ps := range map[string][]Product{
		"product 1 has no SKU":  {tea, {Name: "Fan", PriceCents: 1, Currency: "EUR"}},
		`"INK" has no name`:     {tea, {SKU: "INK", PriceCents: 1, Currency: "EUR"}},
		`"TEA" is priced 0`:     {{SKU: "TEA", Name: "Tea", Currency: "EUR"}},
		`"TEA" is priced -3500`: {{SKU: "TEA", Name: "Tea", PriceCents: -3500, Currency: "EUR"}},
		`"TEA" has no currency`: {{SKU: "TEA", Name: "Tea", PriceCents: 1}},
		`"TEA" is listed twice`: {tea, ink, tea},
	} {
		if err := Check(ps); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err %v, want one saying %s", ps, err, want)
		}
	}
}
