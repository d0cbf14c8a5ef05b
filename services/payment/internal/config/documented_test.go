package config_test

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	paymentconfig "github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestDocumentedDynamicSettingsAreAccepted: every settings document the
// README and the workshop tell an operator to write decodes and validates,
// now that a name Dynamic does not spell so makes the document bad (and
// pkg/dynconfig keeps the last good one instead of applying it).
func TestDocumentedDynamicSettingsAreAccepted(t *testing.T) {
	doc := regexp.MustCompile(`\{"latency_median_ms"[^}\n]*\}`)
	var found int
	for _, path := range []string{"../../README.md", "../../../../docs/workshop/06-resilience-and-faults.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs := doc.FindAll(b, -1)
		if len(docs) == 0 {
			t.Errorf("%s: no settings document found; the pattern is out of date", path)
		}
		for _, d := range docs {
			found++
			var got paymentconfig.Dynamic
			if err := json.Unmarshal(d, &got); err != nil {
				t.Errorf("%s: %s: %v", path, d, err)
			} else if err := got.Validate(); err != nil {
				t.Errorf("%s: %s: %v", path, d, err)
			}
		}
	}
	t.Logf("%d documents", found)
}
