package testenv

import (
	"net"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Redis returns the Redis URL (REDIS_URL) after checking that the server answers. The server is shared by every test:
// namespace keys, or use a key with a random part.
func Redis(t testing.TB) string {
	t.Helper()
	raw := env("REDIS_URL", "redis://127.0.0.1:16379/0")
	reachable(t, "Redis", hostOf(t, "REDIS_URL", raw))
	return raw
}

// Etcd returns the etcd endpoints (ETCD_ENDPOINTS) after checking that the first answers. Tests share the server:
// use a key prefix of their own.
func Etcd(t testing.TB) []string {
	t.Helper()
	eps := list(env("ETCD_ENDPOINTS", "127.0.0.1:12379"))
	if len(eps) == 0 {
		t.Fatalf("testenv: ETCD_ENDPOINTS is empty: %s", Hint)
	}
	reachable(t, "etcd", hostOf(t, "ETCD_ENDPOINTS", eps[0]))
	return eps
}

// NATS returns the NATS URL (NATS_URL) after checking that the server answers. JetStream is enabled with
// sync_interval always; tests share the server, so stream names and subjects must be their own.
//
// NATS_URL may be a comma-separated server list, as nats.go's Connect takes it: nats.go connects to whichever of
// them answers, so the check passes when one does, and the list is returned as it is. A failure shows a list
// through redact.URL rather than as the hosts read from it: nats.go splits at every comma, so a comma in a password
// leaves part of it where a host is read.
func NATS(t testing.TB) string {
	t.Helper()
	raw := env("NATS_URL", "nats://127.0.0.1:14222")
	servers := list(raw)
	if len(servers) == 0 {
		t.Fatalf("testenv: NATS_URL is empty: %s", Hint)
	}
	hosts := make([]string, len(servers))
	for i, s := range servers {
		hosts[i] = natsHostPort(t, s)
	}
	shown := hosts[0]
	if len(hosts) > 1 {
		shown = redact.URL(raw)
	}
	reachableAny(t, "NATS", shown, hosts)
	return raw
}

// natsHostPort is the host:port nats.go dials for server, one entry of NATS_URL: one without a port gets NATS's
// default, 4222 (80 and 443 for ws:// and wss://), as nats.go's Connect gives it. Dialled at the bare host,
// nats://host failed the check while nats.go connected.
func natsHostPort(t testing.TB, server string) string {
	t.Helper()
	hp := hostOf(t, "NATS_URL", server)
	if _, port, err := net.SplitHostPort(hp); err == nil && port != "" {
		return hp
	}
	port := "4222"
	switch scheme, _, _ := strings.Cut(strings.ToLower(server), "://"); scheme {
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	}
	// "host:" has an empty port too; nats.go drops its colon before adding the default.
	return strings.TrimSuffix(hp, ":") + ":" + port
}

// Kafka returns the bootstrap brokers (KAFKA_BROKERS) after checking that the first answers. The topics of
// docs/conventions.md exist with 3 partitions and other topics are auto-created with 3; tests should use topics and
// consumer groups with a random part.
func Kafka(t testing.TB) []string {
	t.Helper()
	brokers := list(env("KAFKA_BROKERS", "127.0.0.1:19092"))
	if len(brokers) == 0 {
		t.Fatalf("testenv: KAFKA_BROKERS is empty: %s", Hint)
	}
	reachable(t, "Kafka", brokers[0])
	return brokers
}

// Pulsar returns the broker service URL (PULSAR_URL) and the admin HTTP URL (PULSAR_ADMIN_URL) after checking that
// both answer. Tenant shanhai with namespace shanhai/events (deduplication on) exists.
func Pulsar(t testing.TB) (serviceURL, adminURL string) {
	t.Helper()
	serviceURL = env("PULSAR_URL", "pulsar://127.0.0.1:16650")
	adminURL = env("PULSAR_ADMIN_URL", "http://127.0.0.1:18080")
	reachable(t, "Pulsar", hostOf(t, "PULSAR_URL", serviceURL))
	reachable(t, "Pulsar admin", hostOf(t, "PULSAR_ADMIN_URL", adminURL))
	return serviceURL, adminURL
}
