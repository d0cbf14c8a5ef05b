package config_test

import (
	"strings"
	"testing"

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
