package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
	orderconfig "github.com/shanhai-dev/shanhai/services/order/internal/config"
)

func TestDefaultsAndEmptyMeansOff(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("ETCD_ENDPOINTS", "")
	t.Setenv("ADMIN_ADDR", "")
	var c orderconfig.Config
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8082" || len(c.KafkaBrokers) != 1 || c.NATSStream != "SHANHAI" || c.DatabaseMaxConns != 20 {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.EtcdEndpoints) != 0 || c.AdminAddr != "" {
		t.Errorf("empty ETCD_ENDPOINTS/ADMIN_ADDR not honoured: %q %q", c.EtcdEndpoints, c.AdminAddr)
	}
}

func TestEveryBadVariableIsNamed(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("CATALOG_CACHE_TTL", "0s")
	t.Setenv("LOG_LEVEL", "loud")
	t.Setenv("DATABASE_MAX_CONNS", "0")
	t.Setenv("READ_TIMEOUT", "-1s")
	var c orderconfig.Config
	err := config.Load(&c)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, v := range []string{"CATALOG_CACHE_TTL", "LOG_LEVEL", "DATABASE_MAX_CONNS", "READ_TIMEOUT"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
}

// ORDER_PENDING_TIMEOUT defaults to 10 minutes and refuses what is not
// positive or is shorter than MinPendingTimeout: an order cancelled while
// payment still retries its charge is an order lost to a fault that heals.
func TestPendingTimeout(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	var c orderconfig.Config
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.PendingTimeout != 10*time.Minute {
		t.Errorf("default ORDER_PENDING_TIMEOUT = %v, want 10m", c.PendingTimeout)
	}
	for value, ok := range map[string]bool{
		"0s": false, "-10m": false, "95s": false, "4m59s": false,
		orderconfig.MinPendingTimeout.String(): true, "1h": true,
	} {
		t.Setenv("ORDER_PENDING_TIMEOUT", value)
		var c orderconfig.Config
		err := config.Load(&c)
		switch {
		case ok && err != nil:
			t.Errorf("%s refused: %v", value, err)
		case !ok && (err == nil || !strings.Contains(err.Error(), "ORDER_PENDING_TIMEOUT")):
			t.Errorf("%s: err %v, want one naming ORDER_PENDING_TIMEOUT", value, err)
		}
	}
}

// TestEmptyServerAddressesAreRefusedByName: DATABASE_URL= passed as set and failed later in database.Open with a
// message about a URL, not the variable; NATS_URL= connected to nats.go's own default, nats://127.0.0.1:4222, not
// the platform's; REDIS_URL= and JWKS_URL= failed later or answered every token 401. Each empty (or blank) value is
// now a start-up error naming its variable, beside the others; unset, the defaults still load. HTTP_ADDR= listened
// on a port the kernel picked, which nothing (probes, discovery's default advertised port) could find; the gateway
// already refused it.
func TestEmptyServerAddressesAreRefusedByName(t *testing.T) {
	for _, name := range []string{"DATABASE_URL", "REDIS_URL", "NATS_URL", "JWKS_URL", "HTTP_ADDR"} {
		for _, value := range []string{"", " \t"} {
			env := map[string]string{"DATABASE_URL": "sqlite://:memory:", name: value}
			var c orderconfig.Config
			err := config.LoadFrom(&c, env)
			var bad *config.Error
			if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != name || !strings.Contains(bad.Vars[0].Problem, "must not be empty") {
				t.Errorf("%s=%q: got %v, want one problem: %s must not be empty", name, value, err, name)
			}
		}
	}
	var c orderconfig.Config
	if err := config.LoadFrom(&c, map[string]string{"DATABASE_URL": "sqlite://:memory:"}); err != nil {
		t.Fatal(err)
	}
	if c.RedisURL == "" || c.NATSURL == "" || c.JWKSURL == "" || c.Addr == "" {
		t.Errorf("defaults lost: REDIS_URL %q, NATS_URL %q, JWKS_URL %q, HTTP_ADDR %q", c.RedisURL, c.NATSURL, c.JWKSURL, c.Addr)
	}
}
