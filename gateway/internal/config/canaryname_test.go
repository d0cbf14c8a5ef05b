package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCanaryVersionWithoutNameIsRefused: canary.Weights.Pick answers ""
// for "no preference", so the share of a version named "" went to every
// version, the others' included: {"": 50, "v2": 50}, with one unversioned
// instance and one of v2, sent v2 three quarters of the untagged traffic.
// The document is bad, and the last good is kept.
func TestCanaryVersionWithoutNameIsRefused(t *testing.T) {
	var d Dynamic
	err := json.Unmarshal([]byte(`{"canary":{"order":{"":50,"v2":50}}}`), &d)
	if err == nil || !strings.Contains(err.Error(), `order/""`) {
		t.Fatalf("a version named \"\": %v, want an error naming order/\"\"", err)
	}
}
