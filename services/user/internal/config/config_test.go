package config_test

import (
	"strings"
	"testing"

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

// Every bad variable is reported at once, by name.
func TestBadValuesNamed(t *testing.T) {
	t.Setenv("DATABASE_URL", "sqlite://:memory:")
	t.Setenv("ACCESS_TOKEN_TTL", "2h")
	t.Setenv("LOGIN_ACCOUNT_ATTEMPTS", "0")
	t.Setenv("TRUSTED_PROXIES", "not-a-cidr")
	t.Setenv("AUTH_DEV_KEYS", "false")
	var c config.Config
	err := pkgconfig.Load(&c)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"ACCESS_TOKEN_TTL", "LOGIN_ACCOUNT_ATTEMPTS", "TRUSTED_PROXIES", "AUTH_SIGNING_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}
