package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// poisonedOnce publishes each event, waits for the consumer to settle them,
// and checks that every one was delivered once and dead-lettered on that
// delivery (a first-delivery reason, not retries_exhausted), that none of
// orders was claimed and that the provider was never called.
func poisonedOnce(t *testing.T, h *harness, events []struct {
	typ string
	o   orderEvent
}) {
	t.Helper()
	raw := make([]rawEvent, len(events))
	for i, e := range events {
		b, err := json.Marshal(e.o)
		if err != nil {
			t.Fatal(err)
		}
		raw[i] = rawEvent{typ: e.typ, orderID: e.o.OrderID, data: string(b)}
	}
	poisonedRawOnce(t, h, raw)
}

// rawEvent is an order event's type and payload as published, and the
// order it names (which must not be claimed).
type rawEvent struct {
	typ, orderID, data string
}

// poisonedRawOnce is poisonedOnce for payloads given as published, for
// what json.Marshal of an orderEvent cannot make.
func poisonedRawOnce(t *testing.T, h *harness, events []rawEvent) {
	t.Helper()
	ctx := context.Background()
	for _, e := range events {
		// The CloudEvents subject is the order id as the order service
		// sends it, but bounded (pkg/event): the payload carries the id.
		env, err := event.New(e.typ, "/shanhai/order", "o", nil)
		if err != nil {
			t.Fatal(err)
		}
		h.publishRaw(svctest.Headers(env, nil), []byte(e.data))
	}
	h.drained()
	c, err := h.stream.JS.Consumer(ctx, h.names.Stream, h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != info.Delivered.Stream {
		t.Errorf("%d deliveries of %d messages: an event that can never be handled was retried", info.Delivered.Consumer, info.Delivered.Stream)
	}
	dl, err := h.svc.Payments.DeadLetters(ctx, 100)
	if err != nil || len(dl) != len(events) {
		t.Fatalf("%d dead letters for %d poison events (%v)", len(dl), len(events), err)
	}
	for _, d := range dl {
		if !strings.Contains(d.Reason, "invalid") || strings.Contains(d.Reason, "after ") {
			t.Errorf("dead letter %s of %s: reason %.200q, want an invalid order on its first delivery", d.EventID, d.EventType, d.Reason)
		}
	}
	for _, e := range events {
		if rows := h.payments(e.orderID); len(rows) != 0 {
			t.Errorf("order %.60q was claimed: %+v", e.orderID, rows)
		}
	}
	if n := h.svc.Provider.Charges(); n != 0 {
		t.Errorf("poison events reached the provider: %d charges", n)
	}
}

// TestOverlongUserIDIsDeadLetteredOnce: a user id too long for the
// payments_user_id index (PostgreSQL refuses an index row over ~2.7 kB,
// SQLSTATE 54000) fails the claim the same way on every delivery. It must
// be refused as invalid on its first delivery, not retried as a database
// error until its retries are exhausted.
func TestOverlongUserIDIsDeadLetteredOnce(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxDeliver = 3 })
	long := make([]byte, 2500)
	_, _ = rand.Read(long)
	user := hex.EncodeToString(long) // 5,000 characters pglz cannot shrink below the limit
	poisonedOnce(t, h, []struct {
		typ string
		o   orderEvent
	}{
		{"order.created", orderEvent{OrderID: uuid.NewString(), UserID: user, TotalCents: 100, Currency: "EUR"}},
		{"order.cancelled", orderEvent{OrderID: uuid.NewString(), UserID: user, TotalCents: 100, Currency: "EUR"}},
	})
}
