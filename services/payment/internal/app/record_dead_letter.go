package app

import (
	"context"
	"fmt"
	"time"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

type RecordDeadLetterHandler struct {
	payments payment.Repository
	newID    func() string
	now      func() time.Time
}

// Handle stores a message the consumer is giving up on. A message already
// recorded (payment.Repository.SaveDeadLetter) returns an error that
// errors.Is payment.ErrDeadLetterRecorded: recorded, but not anew.
func (h RecordDeadLetterHandler) Handle(ctx context.Context, d payment.DeadLetter) error {
	if d.ID == "" {
		d.ID = h.newID()
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = h.now().UTC()
	}
	if err := h.payments.SaveDeadLetter(ctx, d); err != nil {
		return fmt.Errorf("record dead letter for %s: %w", d.MsgID, err)
	}
	return nil
}
