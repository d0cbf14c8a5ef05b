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

// A server URL from the environment that does not parse (a password with a
// bad escape, pasted unencoded) failed the test quoting it whole, password
// and all, into the CI log; so did url.Parse's error beside it.
func TestBadServerURLFailureShowsNoPassword(t *testing.T) {
	const secret = "s3cret"
	cases := []struct {
		variable, value string
		call            func(tb testing.TB)
	}{
		{"DATABASE_URL", "postgres://shanhai:" + secret + "%zz@127.0.0.1:1/shanhai", func(tb testing.TB) { testenv.Postgres(tb) }},
		{"REDIS_URL", "redis://:" + secret + "%zz@127.0.0.1:1/0", func(tb testing.TB) { testenv.Redis(tb) }},
		{"NATS_URL", "nats://bob:" + secret + "%zz@127.0.0.1:1", func(tb testing.TB) { testenv.NATS(tb) }},
		{"PULSAR_URL", "pulsar://bob:" + secret + "%zz@127.0.0.1:1", func(tb testing.TB) { testenv.Pulsar(tb) }},
		// An unencoded '#' ends the authority: url.Parse reads host bob, port 2024, the password's first part.
		{"NATS_URL", "nats://bob:2024#" + secret + "@127.0.0.1:1", func(tb testing.TB) { testenv.NATS(tb) }},
	}
	for _, c := range cases {
		t.Run(c.variable, func(t *testing.T) {
			t.Setenv(c.variable, c.value)
			msg := testenv.Failure(t, c.call)
			if strings.Contains(msg, secret) || strings.Contains(msg, "2024") || !strings.Contains(msg, c.variable) {
				t.Errorf("failure message = %q, want %s named without its password", msg, c.variable)
			}
		})
	}
}

// nats.go takes a server without a scheme (bob:pw@host:4222, or a token as
// TOKEN@host:4222) as nats://. Such a NATS_URL was dialled whole, user info
// and all, so the test failed quoting the password or token, and it failed
// even with NATS up.
func TestNATSURLWithoutSchemeIsDialledAtItsHost(t *testing.T) {
	const secret = "s3cret"
	for _, value := range []string{"bob:" + secret + "@127.0.0.1:1", secret + "@127.0.0.1:1"} {
		t.Run(value, func(t *testing.T) {
			t.Setenv("NATS_URL", value)
			msg := testenv.Failure(t, func(tb testing.TB) { testenv.NATS(tb) })
			want := "NATS not reachable at 127.0.0.1:1: " + testenv.Hint
			if strings.Contains(msg, secret) || !strings.HasPrefix(msg, want) {
				t.Errorf("failure message = %q, want it to start with %q and show no password", msg, want)
			}
		})
	}
}
