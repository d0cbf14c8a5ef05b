package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// sagaGateway is fakeRoutes whose orders end three ways, decided when an
// order is first polled (so after the load generator has recorded its
// creation): odd ones PAID, those divisible by 4 FAILED, the rest never leave
// PENDING. Each ending is announced once on NATS as the payment service does
// (payment.succeeded or payment.failed on subject); the PENDING ones get no
// event. The counts are what the gateway decided.
type sagaGateway struct {
	nc      *nats.Conn
	subject string

	mu           sync.Mutex
	status       map[string]string // order id → status answered
	paid, failed int
}

func (g *sagaGateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", fakeRoutes(0))
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		g.mu.Lock()
		st, ok := g.status[id]
		if !ok {
			n, _ := strconv.Atoi(strings.TrimPrefix(id, "o"))
			st = "PENDING"
			event := ""
			switch {
			case n%2 == 1:
				st, event = "PAID", "payment.succeeded"
				g.paid++
			case n%4 == 0:
				st, event = "FAILED", "payment.failed"
				g.failed++
			}
			g.status[id] = st
			if event != "" {
				m := nats.NewMsg(g.subject)
				m.Header.Set("ce_type", event)
				m.Data = fmt.Appendf(nil, `{"order_id":%q}`, id)
				if err := g.nc.PublishMsg(m); err != nil {
					panic(err)
				}
			}
		}
		g.mu.Unlock()
		fmt.Fprintf(w, `{"id":%q,"status":%q}`, id, st)
	})
	return mux
}

// Every order the run created is in both saga rows, whatever became of it:
// PAID ones with their time, FAILED ones classed "failed", and those neither
// source saw end by the end of the run classed "unfinished", with their age
// then (a lower bound of their saga) in the percentiles. Leaving the last two
// out, as the rows did, reported the sagas that went well and hid exactly the
// ones that went wrong.
func TestSagaRowsKeepOrdersThatNeverBecamePaid(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prefix := "lgtest" + strconv.FormatUint(rand.Uint64(), 36)
	g := &sagaGateway{nc: nc, subject: prefix + ".shanhai.payments.x", status: map[string]string{}}
	gw := httptest.NewServer(g.routes())
	defer gw.Close()

	// -drain 2s: the events of the last polls arrive within it; the
	// PENDING orders keep the run waiting for all of it.
	sum, _ := runMix(t, gw.URL, "-drain", "2s", "-nats", testenv.NATS(t), "-subject", prefix+".shanhai.payments.>")
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	created := sum.Ops["order"].Count
	if created < 15 || g.paid == 0 || g.failed == 0 || g.paid+g.failed == created {
		t.Fatalf("%d orders created, %d paid, %d failed: the run did not exercise all three endings", created, g.paid, g.failed)
	}
	unfinished := created - g.paid - g.failed
	for src, st := range sum.Saga {
		t.Logf("saga (%s): %+v", src, st)
	}
	for _, src := range []string{"nats", "poll"} {
		st := sum.Saga[src]
		if st.Count != created || st.Errors["failed"] != g.failed || st.Errors["unfinished"] != unfinished ||
			st.ErrCount != g.failed+unfinished {
			t.Errorf("saga (%s): %d counted, errors %v; want all %d orders created: %d paid, failed %d, unfinished %d",
				src, st.Count, st.Errors, created, g.paid, g.failed, unfinished)
		}
		// The oldest unfinished order was created in the run's first
		// quarter and the run ended at least 2 s (the drain) after sending.
		if st.MaxMs < 2000 {
			t.Errorf("saga (%s): max %.1f ms, want the unfinished orders' age at the end (over 2 s)", src, st.MaxMs)
		}
	}
	if sum.OrdersPending != unfinished {
		t.Errorf("orders not seen final by poll: %d, want the %d the gateway kept PENDING", sum.OrdersPending, unfinished)
	}
}
