package testenv_test

import (
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A server that is not there must fail the test naming the server, the address and the command that starts it; a
// skip would turn a missing server into a green run.
func TestMissingServerFailsWithHint(t *testing.T) {
	const closed = "127.0.0.1:1" // nothing listens on port 1 on a test machine
	cases := []struct {
		server, variable, value string
		call                    func(tb testing.TB)
	}{
		{"PostgreSQL", "DATABASE_URL", "postgres://shanhai@" + closed + "/shanhai", func(tb testing.TB) { testenv.Postgres(tb) }},
		{"Redis", "REDIS_URL", "redis://" + closed + "/0", func(tb testing.TB) { testenv.Redis(tb) }},
		{"etcd", "ETCD_ENDPOINTS", closed, func(tb testing.TB) { testenv.Etcd(tb) }},
		{"NATS", "NATS_URL", "nats://" + closed, func(tb testing.TB) { testenv.NATS(tb) }},
		{"Kafka", "KAFKA_BROKERS", closed, func(tb testing.TB) { testenv.Kafka(tb) }},
		{"Pulsar", "PULSAR_URL", "pulsar://" + closed, func(tb testing.TB) { testenv.Pulsar(tb) }},
	}
	for _, c := range cases {
		t.Run(c.server, func(t *testing.T) {
			t.Setenv(c.variable, c.value)
			msg := testenv.Failure(t, c.call)
			want := c.server + " not reachable at " + closed + ": " + testenv.Hint
			if !strings.HasPrefix(msg, want) {
				t.Fatalf("failure message = %q, want it to start with %q", msg, want)
			}
		})
	}
}
