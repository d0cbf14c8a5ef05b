package config

import (
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
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
	for _, bad := range []string{`{"timeouts":{"orders":5}}`, `{"timeouts":{"orders":"-1s"}}`, `{"limits":{"ip":"lots"}}`,
		// A misspelt section or limit set nothing and reset every limit.
		`{"limit":{"user":"5/1s"}}`, `{"limits":{"users":"5/1s"}}`, `{"limits":{"user":"5/1s"},"timeout":{"orders":"1s"}}`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestCanaryWeightsOutOfRangeAreRefused: canary.Weights.Pick adds a
// service's weights in an int, and weights near the integer maximum made
// the sum wrap: four of 2^62 summed to 0, which Pick reads as "no
// weights", so untagged traffic went to any instance, versions the
// document left out included; a sum wrapped to a negative number split
// the traffic otherwise than the weights say (90:10 as 9e18:1e18 came out
// near 97:3). A negative weight was read as 0. A weight outside
// 0..MaxWeight now makes the document bad (pkg/dynconfig keeps the last
// good one), with an error naming the service and version.
func TestCanaryWeightsOutOfRangeAreRefused(t *testing.T) {
	for _, tc := range []struct{ doc, names string }{
		{`{"canary":{"order":{"v1":4611686018427387904,"v2":4611686018427387904,"v3":4611686018427387904,"v4":4611686018427387904}}}`, `order/v1`},
		{`{"canary":{"order":{"v1":9000000000000000000,"v2":1000000000000000000}}}`, `order/v1`},
		{`{"canary":{"order":{"v1":90,"v2":9223372036854775807}}}`, `order/v2`},
		{`{"canary":{"user":{"v1":90,"v2":-10}}}`, `user/v2`},
		{`{"canary":{"order":{"v1":90},"user":{"v2":1000001}}}`, `user/v2`},
	} {
		var d Dynamic
		err := json.Unmarshal([]byte(tc.doc), &d)
		if err == nil || !strings.Contains(err.Error(), tc.names) || !strings.Contains(err.Error(), "0 to 1000000") {
			t.Errorf("%s: %v, want an error naming %s and the range 0 to 1000000", tc.doc, err, tc.names)
		}
	}
	// The range's ends load.
	var d Dynamic
	if err := json.Unmarshal([]byte(`{"canary":{"order":{"v1":0,"v2":1000000}}}`), &d); err != nil || d.Canary["order"]["v2"] != 1000000 {
		t.Fatalf("0 and 1000000: %v %+v", err, d)
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

// The platform reads a variable set to "" as empty, the field's zero value
// (pkg/config), never as its default. Every variable whose zero or a
// negative value means nothing the gateway can do is refused at start by
// name, as GATEWAY_MAX_ATTEMPTS= was: some were taken silently and replaced
// by a built-in default (GATEWAY_UPSTREAM_MAX_CONNS=, GATEWAY_REPLICAS=,
// GATEWAY_CONCURRENCY_MAX=, the breaker's periods, GATEWAY_MAX_TIMEOUT=),
// others broke traffic: GATEWAY_UPSTREAM_MAX_CONNS=-1 let the event loop
// open no upstream connection (every request waited for its 504),
// GATEWAY_IDLE_TIMEOUT= kept idle clients forever on the event loop and
// closed them at the read timeout on fasthttp, JWKS_URL= answered every
// token 401, HTTP_ADDR= listened on a random port, SHUTDOWN_TIMEOUT=
// gave the drain a deadline already passed (no drain at all). Zeros that mean something (documented) still load.
func TestEmptyOrMeaninglessValuesAreRefusedByName(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"HTTP_ADDR", ""},
		{"SHUTDOWN_TIMEOUT", ""},
		{"SHUTDOWN_TIMEOUT", "0"},
		{"SHUTDOWN_TIMEOUT", "-1s"},
		{"JWKS_URL", ""},
		{"REDIS_URL", ""},
		{"GATEWAY_LIMIT_NAMESPACE", ""},
		{"GATEWAY_DYNAMIC_KEY", ""},
		{"GATEWAY_ROUTES", ""},
		{"GATEWAY_ROUTE_TIMEOUT", ""},
		{"GATEWAY_MAX_TIMEOUT", ""},
		{"GATEWAY_MAX_TIMEOUT", "-1s"},
		{"GATEWAY_ROUTE_TIMEOUT", "31s"}, // over GATEWAY_MAX_TIMEOUT (30s), which every deadline is cut to
		{"GATEWAY_MAX_BODY_BYTES", ""},
		{"GATEWAY_READ_TIMEOUT", ""},
		{"GATEWAY_WRITE_TIMEOUT", ""},
		{"GATEWAY_WRITE_TIMEOUT", "-1s"},
		{"GATEWAY_IDLE_TIMEOUT", ""},
		{"GATEWAY_UPSTREAM_MAX_CONNS", ""},
		{"GATEWAY_UPSTREAM_MAX_CONNS", "-1"},
		{"GATEWAY_REPLICAS", ""},
		{"GATEWAY_REPLICAS", "-2"},
		{"GATEWAY_RETRY_FLOOR", "-1"},
		{"GATEWAY_MAX_ATTEMPTS", ""},
		{"GATEWAY_BREAKER_OPEN", ""},
		{"GATEWAY_BREAKER_WINDOW", ""},
		{"GATEWAY_BREAKER_WINDOW", "-10s"},
		{"GATEWAY_CONCURRENCY_MAX", ""},
		{"GATEWAY_CONCURRENCY_MAX", "-5"},
		{"GATEWAY_LOOP_HELD_BYTES", ""},
		{"GATEWAY_LOOP_HELD_BYTES", "-1"},
		{"GATEWAY_LOOP_HELD_BYTES", "2097151"}, // under twice the default body limit: one body at it might not fit
		{"GATEWAY_LOOP_MAX_CONNS", ""},
		{"GATEWAY_LOOP_MAX_CONNS", "0"}, // no cap would leave 16 KiB a connection unbounded
		{"GATEWAY_LOOP_MAX_CONNS", "-1"},
	} {
		var cfg Config
		err := pkgconfig.LoadFrom(&cfg, map[string]string{c.name: c.value})
		var bad *pkgconfig.Error
		if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != c.name {
			t.Errorf("%s=%q: got %v, want one problem naming it", c.name, c.value, err)
		}
	}
	// Meaningful zeros and empties: the defaults' own, or documented.
	for _, env := range []map[string]string{
		{},
		{"ADMIN_ADDR": "", "GATEWAY_TRUSTED_PROXIES": "", "GATEWAY_CORS_ORIGINS": "", "TLS_CERT_FILE": "", "TLS_KEY_FILE": ""},
		{"GATEWAY_EVENT_LOOPS": "0", "GATEWAY_IP_LIMIT": "0", "GATEWAY_LOGIN_LIMIT": "", "GATEWAY_USER_LIMIT": "0"},
		{"GATEWAY_RETRY_BUDGET": "0", "GATEWAY_RETRY_FLOOR": "0", "GATEWAY_BREAKER_MIN_REQUESTS": "0"},
		{"ETCD_ENDPOINTS": "", "DISCOVERY_STATIC": "order=127.0.0.1:1"},
		// Routing mode verifies no token and limits nothing.
		{"GATEWAY_MODE": "routing", "JWKS_URL": "", "REDIS_URL": ""},
		// The held-bytes budget is the loop's: a fasthttp gateway's body
		// limit is not checked against it.
		{"GATEWAY_TRANSPORT": "fasthttp", "GATEWAY_MAX_BODY_BYTES": "67108864"},
	} {
		var cfg Config
		if err := pkgconfig.LoadFrom(&cfg, env); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

// A trusted proxy written in IPv4-mapped form (::ffff:10.0.0.0/104) is the
// IPv4 network it maps: the gateway sees every IPv4 peer as IPv4 (the proxy
// unmaps it), so kept as an IPv6 prefix it matched no peer, while the
// operator believed the proxy trusted.
func TestTrustedMappedCIDRIsItsIPv4Network(t *testing.T) {
	c := Config{TrustedProxies: []string{"::ffff:10.0.0.0/104", "::ffff:192.168.1.7", "::ffff:0.0.0.0/96"}}
	got, err := c.Trusted()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("0.0.0.0/0")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: got %v, want %v", c.TrustedProxies[i], got[i], want[i])
		}
	}
	if !proxy.Trusted(got[:1]).Contains(netip.MustParseAddr("10.1.2.3")) {
		t.Errorf("%v does not trust the IPv4 peer 10.1.2.3", got[0])
	}
	// Shorter than /96 it would reach past the mapped range into IPv6
	// addresses nobody meant: refused, naming the form to write instead.
	c = Config{TrustedProxies: []string{"::ffff:10.0.0.0/80"}}
	if _, err := c.Trusted(); err == nil || !strings.Contains(err.Error(), "IPv4-mapped") {
		t.Errorf("::ffff:10.0.0.0/80: %v, want a refusal naming the IPv4-mapped form", err)
	}
}

// GATEWAY_KEYED_RETRY_ROUTES defaults to the order route alone (the one
// upstream that replays a key's first answer), and a prefix the route table
// does not have is refused by name: it would mark nothing.
func TestKeyedRetryRoutes(t *testing.T) {
	var c Config
	if err := pkgconfig.LoadFrom(&c, map[string]string{"DISCOVERY_STATIC": "order=127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.KeyedRetry, route.DefaultKeyedRetry) {
		t.Fatalf("default keyed retry routes %q, want %q", c.KeyedRetry, route.DefaultKeyedRetry)
	}
	err := pkgconfig.LoadFrom(&c, map[string]string{"GATEWAY_KEYED_RETRY_ROUTES": "/api/v1/orders,/api/v1/order"})
	var bad *pkgconfig.Error
	if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != "GATEWAY_KEYED_RETRY_ROUTES" ||
		!strings.Contains(err.Error(), "/api/v1/order") {
		t.Fatalf("an unrouted prefix: %v, want one problem naming GATEWAY_KEYED_RETRY_ROUTES and the prefix", err)
	}
	var none Config
	if err := pkgconfig.LoadFrom(&none, map[string]string{"GATEWAY_KEYED_RETRY_ROUTES": ""}); err != nil || len(none.KeyedRetry) != 0 {
		t.Fatalf("empty (no route retries keyed requests): %v %q", err, none.KeyedRetry)
	}
}

func TestDynamicKeyedRetryJSON(t *testing.T) {
	var d Dynamic
	if err := json.Unmarshal([]byte(`{"keyed_retry":{"orders":false,"users":true}}`), &d); err != nil {
		t.Fatal(err)
	}
	if v, ok := d.KeyedRetry["orders"]; !ok || v || !d.KeyedRetry["users"] {
		t.Fatalf("keyed_retry read as %v", d.KeyedRetry)
	}
	if err := json.Unmarshal([]byte(`{"keyed_retry":{"orders":"yes"}}`), &d); err == nil {
		t.Fatal("a keyed_retry value that is not a boolean was accepted")
	}
}

// A gateway with its own route table and no order route (one fronting the
// user service alone) left GATEWAY_KEYED_RETRY_ROUTES at its default, which
// names the order route: the default must not stop it from starting. The
// default marks the order route where there is one; a prefix set by hand
// that the table lacks is still refused.
func TestKeyedRetryDefaultOnATableWithoutOrders(t *testing.T) {
	var c Config
	env := map[string]string{"GATEWAY_ROUTES": "/api/v1/users=user,/api/v1/sessions=user", "DISCOVERY_STATIC": "user=127.0.0.1:1"}
	if err := pkgconfig.LoadFrom(&c, env); err != nil {
		t.Fatalf("a route table without the order route, GATEWAY_KEYED_RETRY_ROUTES unset: %v", err)
	}
	tb, err := c.RouteTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tb.Routes() {
		if r.KeyedRetry {
			t.Errorf("route %s marked keyed retry by a default naming another route", r.Prefix)
		}
	}
	env["GATEWAY_KEYED_RETRY_ROUTES"] = "/api/v1/user"
	if err := pkgconfig.LoadFrom(&c, env); err == nil || !strings.Contains(err.Error(), "/api/v1/user") {
		t.Fatalf("an unrouted prefix set by hand: %v, want it refused by name", err)
	}
}

// TestDynamicDuplicateKeysAreRefused: encoding/json keeps the last of two
// equal keys (and matches a section name in any letter case), so a
// document naming a weight, a timeout or a whole section twice meant one
// thing to the gateway and another to whoever read or wrote it with a
// first-key-wins tool (etcdctl output piped through jq keeps the last,
// many editors' linters the first). The rest of the platform refuses such
// JSON (pkg/jsonkey); the gateway applied it, the last key winning.
func TestDynamicDuplicateKeysAreRefused(t *testing.T) {
	for _, tc := range []struct{ doc, path string }{
		{`{"canary":{"order":{"v1":90,"v2":10,"v2":90}}}`, `canary.order.v2`},
		{`{"timeouts":{"orders":"1s","orders":"30s"}}`, `timeouts.orders`},
		{`{"limits":{"login":"10/1m:5"},"limits":{"login":"0"}}`, `limits`},
		{`{"limits":{"login":"10/1m:5"},"Limits":{"login":"0"}}`, `Limits`},
		{`{"keyed_retry":{"orders":false,"orders":true}}`, `keyed_retry.orders`},
	} {
		var d Dynamic
		err := json.Unmarshal([]byte(tc.doc), &d)
		if err == nil || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v (decoded %+v), want an error naming %s", tc.doc, err, d, tc.path)
		}
	}
}

// LOG_LEVEL was a string nothing checked: LOG_LEVEL=verbose (or DEBUG, or
// warning) ran the gateway at info without a word, where every other binary
// refuses it at start with the other bad variables.
func TestLogLevelIsRefused(t *testing.T) {
	for _, value := range []string{"verbose", "warning", "DEBUG", ""} {
		var c Config
		err := pkgconfig.LoadFrom(&c, map[string]string{"LOG_LEVEL": value, "GATEWAY_MODE": "x"})
		var bad *pkgconfig.Error
		if !errors.As(err, &bad) || len(bad.Vars) != 2 || bad.Vars[1].Var != "LOG_LEVEL" ||
			!strings.Contains(bad.Vars[1].Problem, "must be debug, info, warn or error") {
			t.Errorf("LOG_LEVEL=%q with GATEWAY_MODE=x: %v; want both refused in one error", value, err)
		}
	}
	var c Config
	if err := pkgconfig.LoadFrom(&c, map[string]string{"LOG_LEVEL": "debug"}); err != nil || c.LogLevel != slog.LevelDebug {
		t.Errorf("LOG_LEVEL=debug: level %v, err %v", c.LogLevel, err)
	}
}
