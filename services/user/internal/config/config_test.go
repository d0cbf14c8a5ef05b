package config_test

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/services/user/internal/config"
)

func TestDefaultsAndRequired(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("AUTH_DEV_KEYS", "true")
	var c config.Config
	if err := pkgconfig.Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8081" || c.AccessTokenTTL.Minutes() != 15 || c.LoginAccountAttempts != 5 || !c.Keys.DevKeys {
		t.Fatalf("defaults: %+v", c)
	}
}

// Sign-ups per IP have variables of their own: an office whose sign-ups used
// up a quota shared with its log ins could not log in, and a load run that
// lifts one does not lift the other. Each table row is what the variables
// give.
func TestSignupLimitVariables(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		attempts int
		window   time.Duration
		loginIP  int
	}{
		{"defaults", nil, 20, 5 * time.Minute, 20},
		{"set", map[string]string{"SIGNUP_IP_ATTEMPTS": "3", "SIGNUP_WINDOW": "1h"}, 3, time.Hour, 20},
		{"login's lifted alone", map[string]string{"LOGIN_IP_ATTEMPTS": "1000000"}, 20, 5 * time.Minute, 1000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": "sqlite://:memory:", "AUTH_DEV_KEYS": "true"}
			maps.Copy(env, tc.env)
			var c config.Config
			if err := pkgconfig.LoadFrom(&c, env); err != nil {
				t.Fatal(err)
			}
			if c.SignupIPAttempts != tc.attempts || c.SignupWindow != tc.window || c.LoginIPAttempts != tc.loginIP {
				t.Errorf("SIGNUP_IP_ATTEMPTS %d, SIGNUP_WINDOW %s, LOGIN_IP_ATTEMPTS %d; want %d, %s, %d",
					c.SignupIPAttempts, c.SignupWindow, c.LoginIPAttempts, tc.attempts, tc.window, tc.loginIP)
			}
		})
	}
}

// Every bad variable is reported at once, by name.
func TestBadValuesNamed(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("ACCESS_TOKEN_TTL", "2h")
	t.Setenv("LOGIN_ACCOUNT_ATTEMPTS", "0")
	t.Setenv("READ_TIMEOUT", "0s")
	t.Setenv("TRUSTED_PROXIES", "not-a-cidr")
	t.Setenv("AUTH_DEV_KEYS", "false")
	var c config.Config
	err := pkgconfig.Load(&c)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"ACCESS_TOKEN_TTL", "READ_TIMEOUT", "LOGIN_ACCOUNT_ATTEMPTS", "TRUSTED_PROXIES", "AUTH_SIGNING_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// Values that parse but the service cannot run with: a blank database URL,
// argon2 costs above what Verify accepts from a stored hash (every login of
// an account hashed with them would fail), no replicas. One error names
// them all.
func TestUnusableValuesNamed(t *testing.T) {
	var c config.Config
	err := pkgconfig.LoadFrom(&c, map[string]string{
		"DATABASE_URL": "  ", "AUTH_DEV_KEYS": "true", "ARGON2_MEMORY_KIB": "2097152", "ARGON2_TIME": "17",
		"ARGON2_CONCURRENCY": "0", "REPLICAS": "-1", "LOGIN_WINDOW": "-5m",
		"SIGNUP_IP_ATTEMPTS": "0", "SIGNUP_WINDOW": "0s",
	})
	var ce *pkgconfig.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *config.Error", err)
	}
	got := map[string]string{}
	for _, v := range ce.Vars {
		got[v.Var] = v.Problem
	}
	want := map[string]string{
		"DATABASE_URL":       "must not be empty",
		"ARGON2_MEMORY_KIB":  "must be between 8192 and 1048576",
		"ARGON2_TIME":        "must be between 1 and 16",
		"ARGON2_CONCURRENCY": "must be at least 1",
		"REPLICAS":           "must be at least 1",
		"LOGIN_WINDOW":       "must be positive",
		"SIGNUP_IP_ATTEMPTS": "must be at least 1",
		"SIGNUP_WINDOW":      "must be positive",
	}
	for name, problem := range want {
		if got[name] != problem {
			t.Errorf("%s: %q, want %q", name, got[name], problem)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
}

// TestEmptyServerAddressesAreRefusedByName: REDIS_URL= passed and failed only once the service wired itself, with a
// message about a URL, not the variable; HTTP_ADDR= listened on a port the kernel picked, which nothing (probes,
// discovery's default advertised port) could find. Each empty or blank value is a start-up error naming its
// variable, as in the gateway, order and payment; unset, the defaults still load.
func TestEmptyServerAddressesAreRefusedByName(t *testing.T) {
	for _, name := range []string{"REDIS_URL", "HTTP_ADDR"} {
		for _, value := range []string{"", " \t"} {
			env := map[string]string{"DATABASE_URL": "sqlite://:memory:", "AUTH_DEV_KEYS": "true", name: value}
			var c config.Config
			err := pkgconfig.LoadFrom(&c, env)
			var bad *pkgconfig.Error
			if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != name || !strings.Contains(bad.Vars[0].Problem, "must not be empty") {
				t.Errorf("%s=%q: got %v, want one problem: %s must not be empty", name, value, err, name)
			}
		}
	}
	var c config.Config
	if err := pkgconfig.LoadFrom(&c, map[string]string{"DATABASE_URL": "sqlite://:memory:", "AUTH_DEV_KEYS": "true"}); err != nil {
		t.Fatal(err)
	}
	if c.RedisURL == "" || c.Addr == "" {
		t.Errorf("defaults lost: REDIS_URL %q, HTTP_ADDR %q", c.RedisURL, c.Addr)
	}
}

// TestKeyVariablesRefusedAtLoad: a bad AUTH_NEXT_KEY (or previous or current
// key) is a start-up error naming its variable, in the one configuration
// error, not a failure once the service wires itself; the three keys must
// differ. A blank one is a mistake too: unset it to have no such key.
func TestKeyVariablesRefusedAtLoad(t *testing.T) {
	cur, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b64, err := auth.MarshalKey(cur)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AUTH_SIGNING_KEY": b64, "AUTH_NEXT_KEY": "bm90IGEga2V5"}, "AUTH_NEXT_KEY"},
		{map[string]string{"AUTH_SIGNING_KEY": b64, "AUTH_NEXT_KEY": " "}, "AUTH_NEXT_KEY"},
		{map[string]string{"AUTH_SIGNING_KEY": b64, "AUTH_NEXT_KEY_FILE": t.TempDir() + "/missing"}, "AUTH_NEXT_KEY_FILE"},
		{map[string]string{"AUTH_SIGNING_KEY": b64, "AUTH_NEXT_KEY": b64}, "AUTH_NEXT_KEY"},
		{map[string]string{"AUTH_SIGNING_KEY": b64, "AUTH_PREVIOUS_KEY": b64}, "AUTH_PREVIOUS_KEY"},
		{map[string]string{"AUTH_SIGNING_KEY": "bm90IGEga2V5"}, "AUTH_SIGNING_KEY"},
	} {
		env := map[string]string{"DATABASE_URL": "sqlite://:memory:"}
		maps.Copy(env, tc.env)
		var c config.Config
		err := pkgconfig.LoadFrom(&c, env)
		var bad *pkgconfig.Error
		if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != tc.want {
			t.Errorf("%v: got %v, want one problem naming %s", tc.env, err, tc.want)
		}
	}
	next, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	nextB64, err := auth.MarshalKey(next)
	if err != nil {
		t.Fatal(err)
	}
	var c config.Config
	if err := pkgconfig.LoadFrom(&c, map[string]string{"DATABASE_URL": "sqlite://:memory:", "AUTH_SIGNING_KEY": b64, "AUTH_NEXT_KEY": nextB64}); err != nil {
		t.Fatal(err)
	}
	keys, _, err := c.Keys.Keys()
	if err != nil || len(keys) != 2 || keys[0].Kid != cur.Kid || keys[1].Kid != next.Kid {
		t.Fatalf("keys %v (%v), want the current key, then the next", keys, err)
	}
}
