package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/shanhai-dev/shanhai/pkg/database"
)

// TestReusedDataSaysWhichOrdersStayPending: -data keeps the SQLite
// databases and etcd, but the embedded Kafka and JetStream start empty. An
// order an earlier run left PENDING whose order.created it had already
// sent is gone from both, so nothing will ever pay or fail it; before, the
// run said nothing, and the user found orders PENDING for good. The run
// must say how many at start, and what to do. An order whose event was not
// sent yet is not one of them: this run's relay sends it.
func TestReusedDataSaysWhichOrdersStayPending(t *testing.T) {
	data := t.TempDir()
	t.Setenv("PULSAR_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard only
	defer cancel()
	p, err := Start(ctx, Options{DataDir: data})
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("first run: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("first run's stop: %v", err)
	}

	// What the first run left: an order mid-saga (its order.created sent
	// to the Kafka that is now gone), and one whose event is still to send.
	db, err := database.Open("sqlite://" + filepath.Join(data, "order.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	stranded, unsent := fmt.Sprint("stranded-", now.UnixNano()), fmt.Sprint("unsent-", now.UnixNano())
	for _, o := range []struct {
		id   string
		sent any
	}{{stranded, now}, {unsent, nil}} {
		if err := db.Exec(`INSERT INTO orders (id, user_id, status, total_cents, currency, created_at, updated_at)
VALUES (?, 'ada', 'PENDING', 4800, 'EUR', ?, ?)`, o.id, now, now).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(`INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at, sent_at)
VALUES ('shanhai.orders', ?, ?, 'order.created', '{}', '{}', ?, ?)`, o.id, "event-"+o.id, now, o.sent).Error; err != nil {
			t.Fatal(err)
		}
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}

	p, err = Start(ctx, Options{DataDir: data})
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("second run: %v", err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("second run's stop: %v", err)
		}
	}()
	var out strings.Builder
	Banner(&out, p, false, Memory{}, nil)
	var warning string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "PENDING") && strings.Contains(line, "earlier run") {
			warning = line
		}
	}
	if !strings.Contains(warning, "1 order ") {
		t.Fatalf("banner of a run on a -data an earlier run left 1 order stranded PENDING in: warning %q, want one naming 1 order\n%s",
			warning, out.String())
	}
}

// TestReusedDataAfterAKilledRunRoutesOnlyToThisRun: a run that is killed
// (kill -9, a crash, the second Ctrl-C of a stop that hangs) never revokes
// its services' leases, and -data keeps etcd, so the next run on that
// directory started with the dead run's instances still registered, their
// leases renewed for a full TTL by the new etcd leader. On another -port
// those addresses answer nothing: within a second or two of the banner the
// gateway's breaker for user opened on them and the JWKS and log ins
// answered 502 and then 503 "circuit breaker open" for seconds. The first
// run here is this test binary as the program, killed with SIGKILL once it
// is up; the second, on the same directory and other ports, must answer
// every one of a burst of requests to a user route.
func TestReusedDataAfterAKilledRunRoutesOnlyToThisRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform twice")
	}
	data := t.TempDir()
	t.Setenv("PULSAR_URL", "")
	first := asProgram("-port "+strconv.Itoa(freePortBlock(t))+" -data "+data, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	startUntilUp(t, first)
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard only
	defer cancel()
	p, err := Start(ctx, Options{DataDir: data}) // free ports: not the killed run's
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("second run: %v", err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("second run's stop: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var failed []string
	for range 100 {
		resp, err := client.Get(p.Gateway() + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed = append(failed, fmt.Sprintf("%d %s", resp.StatusCode, body))
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of 100 JWKS requests through the gateway of a run on a killed run's -data failed, the first: %s",
			len(failed), failed[0])
	}
}

// stopAfterFirstLook is a context that is not done the first time Done is
// asked and is cancelled from then on: a Ctrl-C that arrives the moment
// the embedded etcd is ready, as the start goes on to revoke what an
// earlier run left.
type stopAfterFirstLook struct {
	context.Context
	looked atomic.Bool
}

func (c *stopAfterFirstLook) Done() <-chan struct{} {
	if !c.looked.Swap(true) {
		return nil
	}
	done := make(chan struct{})
	close(done)
	return done
}

func (c *stopAfterFirstLook) Err() error {
	if c.looked.Load() {
		return context.Canceled
	}
	return nil
}

// A start stopped while it revokes an earlier run's leases must fail with
// its reason, not panic: revokeLeftLeases closed the etcd it had already
// handed to the Infra, whose Close then closed it again (embed.Etcd's
// Close closes a channel, once only).
func TestStopWhileRevokingLeftLeasesFailsCleanly(t *testing.T) {
	data := t.TempDir()
	first, err := StartInfra(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.etcd.Server.LeaseGrant(t.Context(), &etcdserverpb.LeaseGrantRequest{TTL: 60}); err != nil {
		first.Close()
		t.Fatal(err)
	}
	first.Close() // as a killed run: the lease is left in the data directory

	panicked := make(chan any, 1)
	func() {
		defer func() { panicked <- recover() }()
		in, err := StartInfra(&stopAfterFirstLook{Context: t.Context()}, data)
		if err == nil {
			in.Close()
			t.Fatal("the start went on after it was stopped")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("start stopped while revoking: %v, want context.Canceled", err)
		}
	}()
	if p := <-panicked; p != nil {
		t.Fatalf("a start stopped while revoking the left leases panicked: %v", p)
	}
}
