package app_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestBridgeArchivesOnceAfterAPolicyWaitLongerThanAckWait: leg B's sessions wait for the max message size policy
// (partition.readLimit) eight times longer than their JetStream consumers' ack wait (BRIDGE_ACK_WAIT 5 s, admin API a
// closed port for 40 s), so JetStream redelivers what each session pulled while it waits. Once the admin API answers,
// every record is archived exactly once and in Kafka order per partition, and no partition stays waiting.
func TestBridgeArchivesOnceAfterAPolicyWaitLongerThanAckWait(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	_, realAdmin := testenv.Pulsar(t)
	addr := awayAddr(t)
	const n = 300
	b := startAway(t, away{env: map[string]string{"PULSAR_ADMIN_URL": "http://" + addr, "BRIDGE_ACK_WAIT": "5s"}, n: n,
		hold: outage, notReady: "pulsar-admin", policyWait: true})

	target, err := url.Parse(realAdmin)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, addr, func(ln net.Listener) error {
		return (&http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}).Serve(ln)
	})
	b.archived(t, n, 60*time.Second)
	b.checkBack(t)
	// Not asserted, for the record: the sessions that met JetStream's redeliveries restarted from the ack floor.
	t.Logf("leg B partition restarts after the wait: %d", strings.Count(b.log.String(), `"msg":"leg B partition restarting"`))
}

// hungAdmin serves on addr an admin API that accepts connections and reads requests but never answers them while it
// hangs; otherwise it relays requests to the real admin API. A request that came while it hung stays unanswered after
// answer, as on a server that hung with it.
type hungAdmin struct {
	mu    sync.Mutex
	hung  bool
	hangs int // requests left unanswered
	proxy http.Handler
}

// serveHungAdmin serves an admin API that hangs from the start.
func serveHungAdmin(t *testing.T, addr, realAdmin string) *hungAdmin {
	t.Helper()
	h := serveAdmin(t, addr, realAdmin)
	h.hang()
	return h
}

// serveAdmin serves an admin API that answers until hang is called.
func serveAdmin(t *testing.T, addr, realAdmin string) *hungAdmin {
	t.Helper()
	target, err := url.Parse(realAdmin)
	if err != nil {
		t.Fatal(err)
	}
	h := &hungAdmin{proxy: httputil.NewSingleHostReverseProxy(target)}
	serveOn(t, addr, func(ln net.Listener) error { return (&http.Server{Handler: h}).Serve(ln) })
	return h
}

func (h *hungAdmin) hang() {
	h.mu.Lock()
	h.hung = true
	h.mu.Unlock()
}

func (h *hungAdmin) answer() {
	h.mu.Lock()
	h.hung = false
	h.mu.Unlock()
}

// unanswered returns how many requests came while it hung.
func (h *hungAdmin) unanswered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hangs
}

func (h *hungAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	hung := h.hung
	if hung {
		h.hangs++
	}
	h.mu.Unlock()
	if hung {
		<-r.Context().Done() // the client gave up (its 10 s timeout) or the server closes
		return
	}
	h.proxy.ServeHTTP(w, r)
}

// TestBridgeArchivesOnceAHungAdminAPIAnswers: a bridge whose Pulsar admin API accepts connections and never answers
// (each reading of the max message size policy takes the HTTP client's 10 s timeout) starts, carries Kafka → NATS,
// says why on /readyz and bridge_pulsar_policy_waiting, and archives everything exactly once in order soon after the
// admin API answers again: within a hung reading's timeout, a backoff and the archiving itself.
func TestBridgeArchivesOnceAHungAdminAPIAnswers(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	_, realAdmin := testenv.Pulsar(t)
	addr := awayAddr(t)
	admin := serveHungAdmin(t, addr, realAdmin)
	const n = 300
	// The wait shows after the first hung reading (10 s); 15 s more take a second one at least.
	b := startAway(t, away{env: map[string]string{"PULSAR_ADMIN_URL": "http://" + addr}, n: n, hold: 15 * time.Second,
		notReady: "pulsar-admin", policyWait: true})

	admin.answer()
	// A reading hung at the moment the API answers gives up after 10 s, the next comes after at most
	// BRIDGE_MAX_BACKOFF (5 s): 15 s, plus the archiving and the reading back on a shared machine.
	b.archived(t, n, 45*time.Second)
	b.checkBack(t)
}

// TestBridgeStopsWhileTheAdminAPIHangs: a bridge whose leg B waits for a hung admin API (a reading in flight for up to
// the client's 10 s) stops within SHUTDOWN_TIMEOUT when its context is cancelled, as on SIGTERM, without the error of
// legs that did not stop.
func TestBridgeStopsWhileTheAdminAPIHangs(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	_, realAdmin := testenv.Pulsar(t)
	addr := awayAddr(t)
	serveHungAdmin(t, addr, realAdmin)
	const budget = 10 * time.Second
	// 3 s after the wait shows: into a hung reading (10 s each, with at most 5 s between).
	b := startAway(t, away{env: map[string]string{"PULSAR_ADMIN_URL": "http://" + addr, "SHUTDOWN_TIMEOUT": budget.String()},
		n: 30, hold: 3 * time.Second, notReady: "pulsar-admin", policyWait: true})
	took, err := b.stop()
	t.Logf("stopped in %v", took.Round(time.Millisecond))
	if err != nil {
		t.Errorf("bridge stopped with %v after %v while a reading hung, want nil", err, took.Round(time.Millisecond))
	}
	if took > budget {
		t.Errorf("bridge took %v to stop while a reading hung, want at most SHUTDOWN_TIMEOUT %v", took.Round(time.Millisecond), budget)
	}
}

// TestBridgeArchivesOnWhileTheAdminAPIHangsAfterAReading: once leg B's sessions have read the max message size policy,
// an admin API that starts to hang (accepts, never answers; every re-reading takes the HTTP client's 10 s timeout)
// holds up nothing: the sessions keep their last reading and archive what comes meanwhile, exactly once and in order,
// without restarting; /readyz stays 200 and no partition counts as waiting.
func TestBridgeArchivesOnWhileTheAdminAPIHangsAfterAReading(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	_, realAdmin := testenv.Pulsar(t)
	addr := awayAddr(t)
	admin := serveAdmin(t, addr, realAdmin)
	// A short interval so that every session meets several hung re-readings within the test.
	b := startBridge(t, map[string]string{"PULSAR_ADMIN_URL": "http://" + addr, "BRIDGE_PULSAR_POLICY_INTERVAL": "2s"})
	const n = 150
	b.produce(t, 0, n)
	b.archived(t, n, 60*time.Second)

	admin.hang()
	// Every partition's session re-reads within an interval; wait until re-readings have hung and timed out.
	deadline := time.Now().Add(time.Minute)
	for admin.unanswered() < 3 || !strings.Contains(b.log.String(), "could not re-read") {
		if time.Now().After(deadline) {
			t.Fatalf("within a minute of the admin API hanging: %d readings hung, log %s", admin.unanswered(), b.log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.produce(t, n, n)
	// Archived while the admin API still hangs (it never answers again): the time of leg A's carrying, leg B's sending
	// and the reading back, not a reading's.
	b.archived(t, 2*n, 45*time.Second)
	if code, body := b.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz = %d %s while the sessions archive under their last reading", code, body)
	}
	if v := b.metric(t, "bridge_pulsar_policy_waiting{"); v != 0 {
		t.Errorf("bridge_pulsar_policy_waiting = %v while the sessions archive under their last reading, want 0", v)
	}
	if logs := b.log.String(); strings.Contains(logs, `"msg":"leg B partition restarting"`) || strings.Contains(logs, "leg B waits for") {
		t.Errorf("leg B restarted or waited for the policy while the admin API hung after a reading: %s", logs)
	}
}
