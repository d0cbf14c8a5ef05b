package server

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

type partDatabaseConfig struct {
	DatabaseURL string `env:"DATABASE_URL,notEmpty" desc:"postgres://... or sqlite://path"`
}

// A bad DATABASE_URL and a bad OTLP endpoint are named in one message with
// exit 2. The endpoint used to be found only by telemetry.Setup, after
// LoadConfig had refused DATABASE_URL alone: the next start then failed
// with a logged error and exit 1.
func TestPartLoadConfigListsBadOTELVariablesWithTheRest(t *testing.T) {
	bad := map[string]string{"DATABASE_URL": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}
	want := []string{"DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
	check := func(name string, err error) {
		t.Helper()
		var invalid *config.Error
		if !errors.As(err, &invalid) {
			t.Fatalf("%s: got %v, want a *config.Error", name, err)
		}
		var got []string
		for _, v := range invalid.Vars {
			got = append(got, v.Var)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: bad variables %v, want %v in one message; error:\n%v", name, got, want, err)
		}
		var w bytes.Buffer
		if code := ExitCode(&w, "user", err); code != 2 || !strings.Contains(w.String(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
			t.Errorf("%s: exit %d with %q, want 2 naming the endpoint", name, code, w.String())
		}
	}
	var hosted partDatabaseConfig
	check("part's variables", (Part{Env: bad}).LoadConfig(&hosted))
	var checked partDatabaseConfig
	check("CheckOnly", (Part{Env: bad, CheckOnly: true}).LoadConfig(&checked))

	for k, v := range bad {
		t.Setenv(k, v)
	}
	var alone partDatabaseConfig
	check("process environment", (Part{}).LoadConfig(&alone))
}

// A part on the host's provider sets up no telemetry of its own, so OTEL_*
// variables are not its to refuse: the host checked them when it set up.
func TestPartLoadConfigLeavesOTELToTheHostsTelemetry(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "sqlite://x.db", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}
	var cfg partDatabaseConfig
	if err := (Part{Env: env, Telemetry: &telemetry.Provider{}}).LoadConfig(&cfg); err != nil {
		t.Errorf("hosted on the host's telemetry: %v, want no error", err)
	}
}
