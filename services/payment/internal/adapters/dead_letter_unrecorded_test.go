package adapters_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
)

// TestDeadLetterNotRecordedIsLoggedOnEveryDelivery: a message that can
// never succeed whose dead letter cannot be recorded (the database down) is
// left for its next delivery, which is right, but those deliveries logged
// nothing: only the last one did, a whole back-off schedule later, and
// meanwhile an operator saw outcome="retry" rising with no reason anywhere.
// Each delivery must say why the message stays.
func TestDeadLetterNotRecordedIsLoggedOnEveryDelivery(t *testing.T) {
	const maxDeliver = 3
	f := failAlways(t, "PAYDLNOTREC", noDeadLetters{adapters.NewPaymentGorm(stores(t)[database.Postgres])}, maxDeliver)
	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 0, Currency: "EUR"}
	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	f.s.Drained(t, f.names.Durable, 30*time.Second)

	f.logged.FollowedBackOff(t, []string{"dead letter not recorded: the message will be delivered again",
		"dead letter not recorded: the message will be delivered again",
		"message given up on and not recorded as dead: recover it from the stream"}, f.backOff)
}
