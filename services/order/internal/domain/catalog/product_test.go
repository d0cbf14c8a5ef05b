package catalog

import (
	"strings"
	"testing"
)

// TestCheck: Check passes a catalogue to price orders from and names the
// first product that is not one, as the Redis cache logs it.
func TestCheck(t *testing.T) {
	tea := Product{SKU: "TEA", Name: "Tea", PriceCents: 1890, Currency: "EUR"}
	ink := Product{SKU: "INK", Name: "", PriceCents: 1, Currency: "CNY"} // no name and one cent are allowed
	if err := Check([]Product{tea, ink}); err != nil {
		t.Fatalf("a good catalogue: %v", err)
	}
	if err := Check(nil); err != nil {
		t.Fatalf("no products (the caller refuses an empty catalogue): %v", err)
	}
	for want, ps := range map[string][]Product{
		"product 1 has no SKU":  {tea, {PriceCents: 1, Currency: "EUR"}},
		`"TEA" is priced 0`:     {{SKU: "TEA", Currency: "EUR"}},
		`"TEA" is priced -3500`: {{SKU: "TEA", PriceCents: -3500, Currency: "EUR"}},
		`"TEA" has no currency`: {{SKU: "TEA", PriceCents: 1}},
		`"TEA" is listed twice`: {tea, ink, tea},
	} {
		if err := Check(ps); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err %v, want one saying %s", ps, err, want)
		}
	}
}
