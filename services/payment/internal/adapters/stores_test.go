package adapters_test

import (
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// stores opens a fresh database migrated by the service on each dialect it
// supports: a new PostgreSQL database on the test server and an SQLite file.
func stores(t *testing.T) map[string]*gorm.DB { return storetest.Databases(t, service.Migrate) }
