package stream

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestPartitionSubjectAndFilters(t *testing.T) {
	if got := PartitionSubject("shanhai.orders", 2); got != "shanhai.orders.p2" {
		t.Fatalf("PartitionSubject = %q", got)
	}
	if got := Filters("dev1.shanhai.payments"); !slices.Equal(got, []string{"dev1.shanhai.payments.>", "dev1.shanhai.payments"}) {
		t.Fatalf("Filters = %q", got)
	}
}

// TestFiltersUpgradeLosesNothing is the upgrade on the real server: a durable
// consumer that filtered the old per-topic subject, with some of it acked and
// some not, is updated in place to Filters; it must deliver the unacked old
// messages and then the per-partition ones, in stream order, and not the
// acked ones again.
func TestFiltersUpgradeLosesNothing(t *testing.T) {
	js, n := testStream(t, "UPGRADE")
	n.Durable = "svc"
	root := strings.TrimSuffix(n.StreamSubjects, ">") // "tupgrade<n>."
	subject := root + "orders"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Ensure(ctx, js, n); err != nil {
		t.Fatal(err)
	}
	publish := func(subj, data string) {
		t.Helper()
		if _, err := js.Publish(ctx, subj, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}

	// Before: one subject per topic, a durable on it, old-1 and old-2 acked.
	old := jetstream.ConsumerConfig{Durable: n.Durable, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy}
	c, err := js.CreateOrUpdateConsumer(ctx, n.Stream, old)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		publish(subject, fmt.Sprintf("old-%d", i))
	}
	batch, err := c.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The upgrade: the same durable with Filters, then the bridge publishes per partition.
	upgraded := old
	upgraded.FilterSubject, upgraded.FilterSubjects = "", Filters(subject)
	if c, err = js.CreateOrUpdateConsumer(ctx, n.Stream, upgraded); err != nil {
		t.Fatalf("update to Filters: %v", err)
	}
	publish(PartitionSubject(subject, 1), "new-1")
	publish(PartitionSubject(subject, 0), "new-2")
	publish(root+"payments.p0", "other topic")

	var got []string
	batch, err = c.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		_ = m.Ack()
	}
	if want := []string{"old-3", "old-4", "new-1", "new-2"}; !slices.Equal(got, want) {
		t.Fatalf("after the upgrade the consumer got %q, want %q", got, want)
	}
}
