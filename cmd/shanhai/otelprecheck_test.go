package main

import (
	"strings"
	"testing"
)

// A bad OTEL_* variable is named by the check the run makes before it
// starts anything (checkConfigs; TestRefusedVariablesStartNothing shows
// nothing starts after it), with the parts refusing it and beside the
// other bad variables. The check did not see it, as pkg/telemetry refused
// it only in Setup: the run made -data, started the embedded servers, and
// only then did the host's telemetry set-up fail, naming it alone.
func TestCheckConfigsNamesABadOTELVariable(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
	t.Setenv("GATEWAY_IP_LIMIT", "bogus")
	err := checkConfigs(Options{DataDir: t.TempDir()}, false)
	if err == nil {
		t.Fatal("checkConfigs accepted OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318")
	}
	for _, want := range []string{
		`OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318"`, "[user, order, payment, bridge, gateway]",
		"GATEWAY_IP_LIMIT", "nothing was started",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("checkConfigs's message does not say %q:\n%v", want, err)
		}
	}
}
