package config_test

import (
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
