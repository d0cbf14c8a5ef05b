package service_test

import (
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/user/internal/service"
)

// Run registers the instance in etcd under a lease with the address it
// listens on, serves, and deregisters on shutdown.
func TestRunRegistersInEtcd(t *testing.T) {
	version := "test-" + uniqEmail()[1:11]
	h := newHarness(t, map[string]string{
		"ETCD_ENDPOINTS":  testenv.Etcd(t)[0],
		"HTTP_ADDR":       "127.0.0.1:0",
		"SERVICE_VERSION": version,
	})
	runtest.RegistersServesAndDeregisters(t, service.Name, version, h.svc.Run)
}
