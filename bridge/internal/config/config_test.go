package config

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
)

func TestDefaultsValid(t *testing.T) {
	// Unset, not empty: a variable set to "" is empty rather than defaulted.
	// t.Setenv first so the outer environment is restored afterwards.
	for _, v := range pkgconfig.Table(&Config{}) {
		t.Setenv(v.Name, "")
		os.Unsetenv(v.Name)
	}
	var c Config
	if err := pkgconfig.Load(&c); err != nil {
		t.Fatal(err)
	}
	if !c.LegA() || !c.LegB() || len(c.KafkaBrokers) != 1 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestEveryBadVariableNamed(t *testing.T) {
	t.Setenv("BRIDGE_TOPICS", "shanhai.dlq,bad/topic")
	t.Setenv("BRIDGE_LEGS", "nats-pulsar")
	t.Setenv("BRIDGE_START_OFFSET", "middle")
	t.Setenv("BRIDGE_INFLIGHT", "0")
	t.Setenv("PULSAR_ADMIN_URL", "127.0.0.1:18080") // no scheme: would be read as a path
	t.Setenv("BRIDGE_PULSAR_POLICY_INTERVAL", "10ms")
	var c Config
	err := pkgconfig.Load(&c)
	if err == nil {
		t.Fatal("Load accepted bad configuration")
	}
	for _, name := range []string{"BRIDGE_TOPICS", "BRIDGE_DLQ_TOPIC", "BRIDGE_LEGS", "BRIDGE_START_OFFSET", "BRIDGE_INFLIGHT", "PULSAR_ADMIN_URL", "BRIDGE_PULSAR_POLICY_INTERVAL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestDLQTopicMustBeAKafkaTopic: BRIDGE_DLQ_TOPIC was only checked against the carried topics, so an empty or invalid
// name was accepted, and the bridge started and held the partition of its first poison message for good, the DLQ
// writer retrying a write Kafka could never take ("dead letter not written; retrying" forever).
func TestDLQTopicMustBeAKafkaTopic(t *testing.T) {
	for _, bad := range []string{"", "bad/dlq", "bad dlq", ".", strings.Repeat("d", 250)} {
		t.Setenv("BRIDGE_DLQ_TOPIC", bad)
		var c Config
		if err := pkgconfig.Load(&c); err == nil || !strings.Contains(err.Error(), "BRIDGE_DLQ_TOPIC") {
			t.Errorf("BRIDGE_DLQ_TOPIC=%q: Load error %v, want it named", bad, err)
		}
	}
	t.Setenv("BRIDGE_DLQ_TOPIC", "shanhai.dlq-2_x")
	var c Config
	if err := pkgconfig.Load(&c); err != nil {
		t.Errorf("a valid DLQ topic refused: %v", err)
	}
}

// TestPulsarURLMustParse: a PULSAR_URL url.Parse refuses reached pulsar.NewClient, which logged url.Parse's error,
// quoting the URL whole (password and all), to the bridge's log before failing.
func TestPulsarURLMustParse(t *testing.T) {
	t.Setenv("BRIDGE_LEGS", "kafka-nats,nats-pulsar")
	for _, bad := range []string{"pulsar://bob:s3cr%zzet@127.0.0.1:6650", "127.0.0.1:6650", "kafka://127.0.0.1:6650"} {
		t.Setenv("PULSAR_URL", bad)
		var c Config
		err := pkgconfig.Load(&c)
		if err == nil || !strings.Contains(err.Error(), "PULSAR_URL") || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("PULSAR_URL=%q: Load error %v, want it named without the password", bad, err)
		}
	}
	for _, good := range []string{"pulsar://127.0.0.1:6650", "pulsar+ssl://bob:pw@pulsar:6651", "http://pulsar:8080",
		"pulsar://h1:6650,h2:6650,h3:6650", "pulsar+ssl://h1:6651;h2:6651/"} { // a cluster's hosts, as the client takes them
		t.Setenv("PULSAR_URL", good)
		var c Config
		if err := pkgconfig.Load(&c); err != nil {
			t.Errorf("PULSAR_URL=%q refused: %v", good, err)
		}
	}
}

// TestPulsarURLWithAHostListTheClientTakes: the Pulsar client splits a service URL's host list at "," or ";" before it
// parses it, so a list url.Parse refuses whole (HTTP lookup hosts with ports, IPv6 literals) still names a cluster it
// connects to; the bridge must not refuse it at start.
func TestPulsarURLWithAHostListTheClientTakes(t *testing.T) {
	t.Setenv("BRIDGE_LEGS", "kafka-nats,nats-pulsar")
	for _, good := range []string{"http://h1:8080,h2:8080", "https://bob:pw@h1:8443;h2:8443/", "pulsar://[::1]:6650,[::2]:6650"} {
		t.Setenv("PULSAR_URL", good)
		var c Config
		if err := pkgconfig.Load(&c); err != nil {
			t.Errorf("PULSAR_URL=%q refused: %v", good, err)
		}
	}
	for _, bad := range []string{"http://,h2:8080", "pulsar://bob:s3cr%zzet@h1:6650,h2:6650"} {
		t.Setenv("PULSAR_URL", bad)
		var c Config
		err := pkgconfig.Load(&c)
		if err == nil || !strings.Contains(err.Error(), "PULSAR_URL") || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("PULSAR_URL=%q: Load error %v, want it named without the password", bad, err)
		}
	}
}

// TestDLQTopicMustNotCollideWithACarriedTopic: Kafka will not create a topic whose name differs from an existing one
// only by '.' against '_' (INVALID_TOPIC_EXCEPTION; pkg/outbox's TestRelayPublishesRowsBesideOneForATopicKafkaRefuses
// relies on it), so a DLQ topic colliding with a carried one, which exists, was never created, and the first poison
// message held its partition for good, its letter retried against a topic that is not there.
func TestDLQTopicMustNotCollideWithACarriedTopic(t *testing.T) {
	t.Setenv("BRIDGE_TOPICS", "shanhai.users,shanhai.orders")
	t.Setenv("BRIDGE_DLQ_TOPIC", "shanhai_orders")
	var c Config
	if err := pkgconfig.Load(&c); err == nil || !strings.Contains(err.Error(), "BRIDGE_DLQ_TOPIC") {
		t.Errorf("BRIDGE_DLQ_TOPIC=shanhai_orders beside shanhai.orders: Load error %v, want it named", err)
	}
	t.Setenv("BRIDGE_DLQ_TOPIC", "shanhai_dlq")
	if err := pkgconfig.Load(&c); err != nil {
		t.Errorf("a DLQ topic colliding with nothing refused: %v", err)
	}
}

// TestEmptyServerAddressesAreRefusedByName: NATS_URL= made nats.go dial its own default, nats://127.0.0.1:4222, not
// the platform's 14222, and HTTP_ADDR= listened on a port the kernel picked, where no probe finds /healthz. Each
// empty or blank value is a start-up error naming its variable, with the gateway's and the services' wording.
// PULSAR_URL= is refused by name while leg B runs (and unused when it does not).
func TestEmptyServerAddressesAreRefusedByName(t *testing.T) {
	for _, name := range []string{"NATS_URL", "HTTP_ADDR", "PULSAR_URL"} {
		for _, value := range []string{"", " \t"} {
			var c Config
			err := pkgconfig.LoadFrom(&c, map[string]string{name: value})
			var bad *pkgconfig.Error
			if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != name || !strings.Contains(bad.Vars[0].Problem, "must not be empty") {
				t.Errorf("%s=%q: got %v, want one problem: %s must not be empty", name, value, err, name)
			}
		}
	}
}

// TestDuplicateWindowOutlastsARepublish: leg A publishes a message again when JetStream has not confirmed it within
// BRIDGE_PUBLISH_TIMEOUT, after a restart backoff of up to BRIDGE_MAX_BACKOFF; the stream dedups it by Nats-Msg-Id only
// within BRIDGE_DUPLICATE_WINDOW. A window of 5 s against the 15 s timeout was accepted, and every message stored
// but confirmed late (a slow fsync, a lost ack) was stored twice.
func TestDuplicateWindowOutlastsARepublish(t *testing.T) {
	for _, tc := range []struct {
		window, timeout, backoff string
		ok                       bool
	}{
		{"5s", "15s", "5s", false},
		{"20s", "15s", "5s", false},
		{"21s", "15s", "5s", false}, // a session's last publish in flight may time out a whole timeout later
		{"35s", "15s", "5s", false},
		{"36s", "15s", "5s", true},
		{"2m", "15s", "5s", true},
		{"5s", "1s", "1s", true},
	} {
		t.Setenv("BRIDGE_DUPLICATE_WINDOW", tc.window)
		t.Setenv("BRIDGE_PUBLISH_TIMEOUT", tc.timeout)
		t.Setenv("BRIDGE_MAX_BACKOFF", tc.backoff)
		var c Config
		err := pkgconfig.Load(&c)
		if named := err != nil && strings.Contains(err.Error(), "BRIDGE_DUPLICATE_WINDOW"); named == tc.ok {
			t.Errorf("BRIDGE_DUPLICATE_WINDOW=%s with BRIDGE_PUBLISH_TIMEOUT=%s, BRIDGE_MAX_BACKOFF=%s: Load error %v, want accepted %v",
				tc.window, tc.timeout, tc.backoff, err, tc.ok)
		}
	}
}

// TestLogLevelIsRefused: LOG_LEVEL was a string nothing checked, so LOG_LEVEL=verbose (or DEBUG, or warning) ran the
// bridge at info without a word, where the services and the eBPF agent refuse it at start.
func TestLogLevelIsRefused(t *testing.T) {
	for _, value := range []string{"verbose", "warning", "DEBUG", ""} {
		var c Config
		err := pkgconfig.LoadFrom(&c, map[string]string{"LOG_LEVEL": value, "BRIDGE_INFLIGHT": "0"})
		var bad *pkgconfig.Error
		if !errors.As(err, &bad) || len(bad.Vars) != 2 || bad.Vars[1].Var != "LOG_LEVEL" ||
			!strings.Contains(bad.Vars[1].Problem, "must be debug, info, warn or error") {
			t.Errorf("LOG_LEVEL=%q with BRIDGE_INFLIGHT=0: %v; want both refused in one error", value, err)
		}
	}
	var c Config
	if err := pkgconfig.LoadFrom(&c, map[string]string{"LOG_LEVEL": "debug"}); err != nil || c.LogLevel != slog.LevelDebug {
		t.Errorf("LOG_LEVEL=debug: level %v, err %v", c.LogLevel, err)
	}
}

// TestShutdownTimeoutMustLeaveTheLegsADrain: SHUTDOWN_TIMEOUT was not checked. 0 or a negative value started a bridge
// whose server and legs fell back to 10 s each (pkg/server, kafkaleg, pulsarleg defaults), so the legs' drains took the
// whole stop; a value of a few nanoseconds gave the stop no time and the legs' drains the same 10 s fallback.
func TestShutdownTimeoutMustLeaveTheLegsADrain(t *testing.T) {
	for _, bad := range []string{"0", "-1s", "1ns", "99ms"} {
		t.Setenv("SHUTDOWN_TIMEOUT", bad)
		var c Config
		if err := pkgconfig.Load(&c); err == nil || !strings.Contains(err.Error(), "SHUTDOWN_TIMEOUT") {
			t.Errorf("SHUTDOWN_TIMEOUT=%q: Load error %v, want it named", bad, err)
		}
	}
	for _, good := range []string{"100ms", "30s"} {
		t.Setenv("SHUTDOWN_TIMEOUT", good)
		var c Config
		if err := pkgconfig.Load(&c); err != nil {
			t.Errorf("SHUTDOWN_TIMEOUT=%q refused: %v", good, err)
		}
	}
}
