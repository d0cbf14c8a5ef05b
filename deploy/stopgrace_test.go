package deploy

import (
	"testing"
	"time"
)

// defaultShutdownTimeout is SHUTDOWN_TIMEOUT's default in every binary that reads it.
const defaultShutdownTimeout = 10 * time.Second

// dockerStopGrace is what docker compose waits between SIGTERM and SIGKILL when a service sets no stop_grace_period.
const dockerStopGrace = 10 * time.Second

// stopMargin covers the steps of a stop that are quick when healthy but not counted below: closing connections and
// the process's exit. (It also covered the etcd deregistration and the telemetry flush, which had a SHUTDOWN_TIMEOUT
// each in pkg/server: a hung etcd or a dead collector took that much more than any budget. They are bounded and counted
// now: deregisterTimeout and flushFloor below.)
const stopMargin = 2 * time.Second

// stopBudget is how long the binary name may take from SIGTERM to its exit when its stop is slow but not hung, given
// its SHUTDOWN_TIMEOUT: the time its container must be given before a SIGKILL, which loses what the stop was still
// writing. It is built from the binaries' code, which the READMEs' "Stopping" sections describe:
//
//   - pkg/server (user, order, payment, bridge) gives leaving etcd server.DeregisterTimeout (1 s), waits
//     server.DefaultDeregisterDelay (1 s) after it, then gives the drain SHUTDOWN_TIMEOUT and each OnShutdown hook a SHUTDOWN_TIMEOUT of its own (pkg/server/run.go:
//     one slow step must not eat the next one's time): order's, payment's and the bridge's hooks stop consumers
//     within it, so a slow database that holds both the requests and the consumer takes two of them; the user
//     service has no consumer, its hook only ends the relay and the housekeeping; last, the telemetry flush takes what
//     is left of the stop's deadline, at least server.FlushFloor (1 s): after the graces below, that floor;
//   - after its hook's deadline, what must not be lost still gets a bounded grace: an outbox relay's round 5 s
//     (pkg/outbox stopGrace; order, payment and user run one); payment's message queued on its last delivery a 5 s
//     try (lastChance), the answer of that try 5 s to be stored (AnswerGrace), a dead letter 5 s (deadLetterGrace),
//     one after the other when the database is slow, then its relay;
//   - the gateway drains its listener within SHUTDOWN_TIMEOUT, then flushes telemetry within what is left of the
//     stop's deadline, at least server.FlushFloor (gateway/run.go serveUntil, pkg/server's rule): with a drain that
//     used all of its time, that floor;
//   - the eBPF agent reads no SHUTDOWN_TIMEOUT: it sends its final OTLP export within 5 s (bpf/cmd/agent
//     stopTimeout), the one step a SIGKILL must not cut, then detaches and shuts its HTTP server down; the detach
//     takes about 2 s per executable in the kernel (bpf/README.md), and a SIGKILL during it leaves the same detach
//     to the kernel at the process's exit, losing nothing, so the budget does not wait for it.
//
// The budget is a ceiling, not a wait: a healthy stop ends in about the deregistration delay.
func stopBudget(t *testing.T, name string, shutdown time.Duration) time.Duration {
	t.Helper()
	const (
		deregisterTimeout = time.Second     // pkg/server's DeregisterTimeout
		deregisterDelay   = time.Second     // pkg/server's DefaultDeregisterDelay
		flushFloor        = time.Second     // pkg/server's FlushFloor
		relayGrace        = 5 * time.Second // pkg/outbox's stopGrace
	)
	// Leaving etcd, the drain, then the OnShutdown hook, each with its own deadline, and the flush after them.
	server := deregisterTimeout + deregisterDelay + 2*shutdown + flushFloor
	switch name {
	case "gateway":
		return shutdown + flushFloor + stopMargin
	case "user":
		// Its hook ends with its context (the relay's grace inside it), and
		// a hook that ends early leaves the flush what is left of the stop's
		// deadline, which counts the hook's whole SHUTDOWN_TIMEOUT.
		return server + stopMargin
	case "order":
		return server + relayGrace + stopMargin
	case "payment":
		const lastTry, answer, deadLetter = 5 * time.Second, 5 * time.Second, 5 * time.Second
		return server + lastTry + answer + deadLetter + relayGrace + stopMargin
	case "bridge":
		return server + stopMargin
	case "bpf-agent":
		return 5*time.Second + stopMargin
	}
	t.Fatalf("%s: no stop budget: add the binary to stopBudget", name)
	return 0
}

// shutdownTimeout parses a SHUTDOWN_TIMEOUT value, the default when unset or empty, as the binaries read it.
func shutdownTimeout(t *testing.T, where, v string) time.Duration {
	t.Helper()
	if v == "" {
		return defaultShutdownTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: SHUTDOWN_TIMEOUT=%q: %v", where, v, err)
	}
	return d
}

// TestComposeLetsEveryBinaryFinishItsStop: docker compose stop and down give each platform binary at least its stop
// budget (stopBudget) before the SIGKILL. None set stop_grace_period, so Docker's 10 s applied: a stop whose drain
// ran to SHUTDOWN_TIMEOUT (10 s by default) was killed before its consumers and relays stopped, and payment then lost
// a queued last delivery without a dead letter and left a charge answered at the cut-off PENDING with the money taken.
func TestComposeLetsEveryBinaryFinishItsStop(t *testing.T) {
	p := loadCompose(t)
	for _, b := range Binaries {
		s, ok := p.Services[b.Name]
		if !ok {
			t.Errorf("%s: not in the compose file", b.Name)
			continue
		}
		grace := dockerStopGrace
		if s.StopGracePeriod != nil {
			grace = time.Duration(*s.StopGracePeriod)
		}
		need := stopBudget(t, b.Name, shutdownTimeout(t, "compose "+b.Name, value(s.Environment["SHUTDOWN_TIMEOUT"])))
		if grace < need {
			t.Errorf("compose %s: stop_grace_period %v, want at least %v (its stop budget): SIGKILL cuts its stop short",
				b.Name, grace, need)
		}
	}
}
