package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
	paymentconfig "github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

func TestInitialSettingsFromEnv(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("PROVIDER_FAILURE_RATE", "0.25")
	var c paymentconfig.Config
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	d := c.Initial()
	if d.LatencyMedianMs != 5 || d.LatencyP99Ms != 25 || d.FailureRate != 0.25 || d.DeclineAboveCents != 100000 {
		t.Errorf("initial settings = %+v", d)
	}
}

func TestBadProviderSettingsAreNamed(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("PROVIDER_FAILURE_RATE", "1.5")
	t.Setenv("PROVIDER_LATENCY_P99", "1ms")
	t.Setenv("CONSUMER_MAX_DELIVER", "1")
	t.Setenv("DATABASE_MAX_CONNS", "-1")
	t.Setenv("READ_TIMEOUT", "0s")
	t.Setenv("SETTLE_INTERVAL", "0s")
	t.Setenv("DEAD_LETTER_RETENTION", "-1h")
	var c paymentconfig.Config
	err := config.Load(&c)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, v := range []string{"PROVIDER_FAILURE_RATE", "PROVIDER_LATENCY_P99", "CONSUMER_MAX_DELIVER", "DATABASE_MAX_CONNS", "READ_TIMEOUT", "SETTLE_INTERVAL", "DEAD_LETTER_RETENTION"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
}

func TestDynamicValidate(t *testing.T) {
	var c paymentconfig.Config
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	for _, good := range []paymentconfig.Dynamic{
		c.Initial(), {}, {LatencyMedianMs: 10000, LatencyP99Ms: 10000, FailureRate: 1, Currencies: []string{"EUR"}},
	} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	bad := paymentconfig.Dynamic{LatencyMedianMs: 50, LatencyP99Ms: 1, FailureRate: -3, DeclineAboveCents: -1}
	err := bad.Validate()
	for _, field := range []string{"latency_p99_ms", "failure_rate", "decline_above_cents"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%+v: error %v does not name %s", bad, err, field)
		}
	}
	if err := (paymentconfig.Dynamic{LatencyMedianMs: 5, LatencyP99Ms: 10001}).Validate(); err == nil {
		t.Error("a p99 above MaxLatency accepted")
	}
}

func TestProviderLatencyIsBounded(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("PROVIDER_LATENCY_P99", "11s")
	var c paymentconfig.Config
	if err := config.Load(&c); err == nil || !strings.Contains(err.Error(), "PROVIDER_LATENCY_P99") {
		t.Fatalf("PROVIDER_LATENCY_P99=11s: err = %v", err)
	}
}

// TestEmptyServerAddressesAreRefusedByName: DATABASE_URL= passed as set and failed later in database.Open with a
// message about a URL, not the variable; NATS_URL= connected to nats.go's own default, nats://127.0.0.1:4222, not
// the platform's; JWKS_URL= answered every token 401. Each empty (or blank) value is now a start-up error naming its
// variable, beside the others; unset, the defaults still load. HTTP_ADDR= listened on a port the kernel picked,
// which nothing could find (the gateway already refused it); PAYMENT_SETTINGS_KEY= watched the whole etcd prefix
// /shanhai/config/ in place of the payment key.
func TestEmptyServerAddressesAreRefusedByName(t *testing.T) {
	for _, name := range []string{"DATABASE_URL", "NATS_URL", "JWKS_URL", "HTTP_ADDR", "PAYMENT_SETTINGS_KEY"} {
		for _, value := range []string{"", " \t"} {
			env := map[string]string{"DATABASE_URL": "sqlite://:memory:", name: value}
			var c paymentconfig.Config
			err := config.LoadFrom(&c, env)
			var bad *config.Error
			if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != name || !strings.Contains(bad.Vars[0].Problem, "must not be empty") {
				t.Errorf("%s=%q: got %v, want one problem: %s must not be empty", name, value, err, name)
			}
		}
	}
	var c paymentconfig.Config
	if err := config.LoadFrom(&c, map[string]string{"DATABASE_URL": "sqlite://:memory:"}); err != nil {
		t.Fatal(err)
	}
	if c.NATSURL == "" || c.JWKSURL == "" || c.Addr == "" || c.SettingsKey == "" {
		t.Errorf("defaults lost: NATS_URL %q, JWKS_URL %q, HTTP_ADDR %q, PAYMENT_SETTINGS_KEY %q", c.NATSURL, c.JWKSURL, c.Addr, c.SettingsKey)
	}
}
