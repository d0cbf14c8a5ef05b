package config

import (
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the configuration table in gateway/README.md")

// The README's variable table is generated from Config; this keeps it honest.
func TestConfigDoc(t *testing.T) {
	if err := pkgconfig.SyncDoc("../../README.md", "gateway", *update,
		pkgconfig.Section{Title: "gateway environment", Config: Config{}}); err != nil {
		t.Fatal(err)
	}
}

func TestRateParsing(t *testing.T) {
	good := map[string]Rate{
		"100/1s:200": {Count: 100, Period: time.Second, Burst: 200},
		"10/1m":      {Count: 10, Period: time.Minute},
		"0":          {},
		"off":        {},
	}
	for in, want := range good {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("%q: %+v, %v; want %+v", in, r, err, want)
		}
	}
	for _, in := range []string{"100", "x/1s", "100/x", "-1/1s", "100/1s:0", "100/0s", "100/1s:x"} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %+v", in, r)
		}
	}
}

func TestDynamicJSON(t *testing.T) {
	var d Dynamic
	doc := `{"canary":{"order":{"v1":90,"v2":10}},"timeouts":{"orders":"250ms"},"limits":{"user":"5/1s:10"}}`
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatal(err)
	}
	if d.Canary["order"]["v2"] != 10 || time.Duration(d.Timeouts["orders"]) != 250*time.Millisecond ||
		d.Limits["user"] != (Rate{Count: 5, Period: time.Second, Burst: 10}) {
		t.Fatalf("decoded %+v", d)
	}
	for _, bad := range []string{`{"timeouts":{"orders":5}}`, `{"timeouts":{"orders":"-1s"}}`, `{"limits":{"ip":"lots"}}`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestValidateNamesEveryBadVariable(t *testing.T) {
	c := Config{Mode: "fast", Routes: "nope", RouteTimeout: time.Second, MaxBodyBytes: 0, ReadTimeout: time.Second,
		TrustedProxies: []string{"10.0.0.0/33"}, TLSCertFile: "c.pem", MaxAttempts: 1, BreakerRatio: 0.5,
		EtcdEndpoints: []string{"x"}, RetryBudget: -0.5}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, v := range []string{"GATEWAY_MODE", "GATEWAY_ROUTES", "GATEWAY_MAX_BODY_BYTES", "GATEWAY_TRUSTED_PROXIES", "TLS_CERT_FILE", "GATEWAY_RETRY_BUDGET"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
}

// Through the loader, as the binary reads it: each bad variable is its own
// problem with what is expected of it, and a Validate complaint is not lost
// when another variable fails to parse.
func TestLoadListsEveryBadVariable(t *testing.T) {
	var c Config
	err := pkgconfig.LoadFrom(&c, map[string]string{"GATEWAY_MODE": "x", "GATEWAY_MAX_ATTEMPTS": "", "GATEWAY_IP_LIMIT": "x"})
	var bad *pkgconfig.Error
	if !errors.As(err, &bad) {
		t.Fatalf("want *config.Error, got %v", err)
	}
	want := []string{"GATEWAY_IP_LIMIT", "GATEWAY_MAX_ATTEMPTS", "GATEWAY_MODE"}
	if len(bad.Vars) != len(want) {
		t.Fatalf("want %d problems (%v), got: %v", len(want), want, err)
	}
	for i, v := range bad.Vars {
		if v.Var != want[i] || v.Expected == "" {
			t.Errorf("problem %d: want %s with what is expected, got %q", i, want[i], v.Error())
		}
	}
}
