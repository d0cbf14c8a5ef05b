package testenv

import (
	"net/url"
	"strings"
	"testing"
)

// NATS returns the test NATS URL after checking that the server answers.
// The server is shared: tests use private stream and subject names.
func NATS(t testing.TB) string {
	t.Helper()
	raw := env("NATS_URL", "nats://127.0.0.1:14222")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testenv: NATS_URL %q: %v", raw, err)
	}
	reachable(t, "NATS", u.Host)
	return raw
}

// Kafka returns the test Kafka brokers after checking that the first answers.
// Topics are shared: tests filter by the keys they wrote.
func Kafka(t testing.TB) []string {
	t.Helper()
	brokers := strings.Split(env("KAFKA_BROKERS", "127.0.0.1:19092"), ",")
	reachable(t, "Kafka", brokers[0])
	return brokers
}
