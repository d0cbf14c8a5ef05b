package adapters

import (
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// decodeOrder decodes the payload of an order.created or order.cancelled.
// A payload whose object names one member twice is refused as invalid
// (wrapping payment.ErrInvalid): encoding/json keeps the last of the two,
// and matches member names to fields regardless of case, so
// {"total_cents":100,"TOTAL_CENTS":1} was charged 1 while a reader that
// keeps the first member (many do) saw an order of 100. The order service
// marshals its events and never writes such a payload, so one is forged or
// corrupt, and charging or cancelling on either reading would be a guess.
// event.Envelope.Decode applies that rule (pkg/jsonkey), the one every JSON
// the platform reads is held to.
func decodeOrder(env event.Envelope) (OrderCreatedData, error) {
	var d OrderCreatedData
	if err := env.Decode(&d); err != nil {
		if errors.Is(err, event.ErrInvalid) {
			return OrderCreatedData{}, fmt.Errorf("%w: %w", payment.ErrInvalid, err)
		}
		return OrderCreatedData{}, err
	}
	return d, nil
}
