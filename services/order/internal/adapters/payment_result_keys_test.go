package adapters_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// TestResultNamingAFieldTwiceIsTerminated runs the consumer as the service
// does, on the real NATS server and PostgreSQL, with payment results whose
// payload names one field twice. encoding/json keeps the last copy and
// matches names regardless of case, so {"order_id":A,...,"order_id":B} paid
// order B while payment, or any reader that keeps the first copy, charged
// A: the saga's two sides disagreed on which order was paid. Such a result
// is terminated on its first delivery and changes no order; a well-formed
// result beside them is still applied. So is a result in a currency other
// than its order's (eb44933: the consumer hands the payload's currency to
// ApplyPayment; a 1 EUR order is not paid by a result for 1 USD) while one
// in the order's currency is applied.
func TestResultNamingAFieldTwiceIsTerminated(t *testing.T) {
	ctx := context.Background()
	db := stores(t)[database.Postgres]
	repo := adapters.NewOrderGorm(db)
	placed := map[string]*order.Order{}
	for _, name := range []string{"first", "second", "lower", "upper", "usd", "good"} {
		o := newOrder(t, db, "alice", 1)
		if err := repo.Create(ctx, o, order.Replay{UserID: "alice", Key: "k-" + o.ID(), RequestHash: "h", StatusCode: 201}); err != nil {
			t.Fatal(err)
		}
		placed[name] = o
	}
	total := placed["first"].TotalCents()

	s := svctest.NewStream(t, "ORDDUPKEY")
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.PaymentsSubject, Durable: "order"}
	const maxDeliver = 5
	cons, err := adapters.EnsureConsumer(ctx, s.JS, names, maxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	logged := &records{}
	apply := app.New(app.Deps{Orders: repo}).ApplyPayment
	stop, err := adapters.NewPaymentEvents(cons, names, apply, maxDeliver, slog.New(logged)).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())

	result := func(orderID, extra string) string {
		return fmt.Sprintf(`{"payment_id":"pay-%s","order_id":%q,"user_id":"alice","amount_cents":%d,"reason":""%s}`,
			orderID, orderID, total, extra)
	}
	publish := func(key, data string) {
		env, err := event.New(adapters.PaymentSucceeded, "/shanhai/payment", key, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Publish(t, names.Subject, "shanhai.payments", key, svctest.Headers(env, nil), []byte(data))
	}
	publish(placed["first"].ID(), result(placed["first"].ID(), `,"order_id":"`+placed["second"].ID()+`"`))
	publish(placed["lower"].ID(), result(placed["lower"].ID(), `,"ORDER_ID":"`+placed["upper"].ID()+`"`))
	publish(placed["usd"].ID(), result(placed["usd"].ID(), `,"currency":"USD"`))
	publish(placed["good"].ID(), result(placed["good"].ID(), `,"currency":"EUR"`))
	s.Drained(t, names.Durable, 20*time.Second)

	for name, o := range placed {
		got, err := repo.Get(ctx, "alice", o.ID())
		if err != nil {
			t.Fatal(err)
		}
		want := order.Pending
		if name == "good" {
			want = order.Paid
		}
		if got.Status() != want {
			t.Errorf("order %q is %s, want %s", name, got.Status(), want)
		}
	}
	if n := logged.count("payment result dropped", "more than once"); n != 2 {
		t.Errorf("%d results dropped for a field named twice, want 2; logged %v", n, logged.all())
	}
	if n := logged.count("payment result dropped", `"USD"`); n != 1 {
		t.Errorf("%d results dropped for another currency, want 1; logged %v", n, logged.all())
	}
	if n := svctest.Delivered(t, cons); n != 4 {
		t.Errorf("%d deliveries of 4 results, want each delivered once", n)
	}
}

// records is a slog.Handler that keeps each record's message and its "err"
// attribute.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }

func (r *records) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			line += ": " + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, line)
	return nil
}

// count is how many records start with msg and mention detail.
func (r *records) count(msg, detail string) int {
	n := 0
	for _, m := range r.all() {
		if strings.HasPrefix(m, msg) && strings.Contains(m, detail) {
			n++
		}
	}
	return n
}

func (r *records) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}
