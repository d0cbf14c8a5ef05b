package payment

import "errors"

var (
	// ErrNotFound covers a missing payment and another user's payment alike.
	ErrNotFound = errors.New("payment not found")
	// ErrInvalid marks an event that can never be charged; its message is
	// terminated and dead-lettered rather than retried.
	ErrInvalid = errors.New("invalid payment request")
	// ErrRefundDeclined marks a refund the provider refused: a business
	// answer (nothing it knows of under the key to give back), not a fault,
	// so asking again gets the same answer.
	ErrRefundDeclined = errors.New("refund declined by the provider")
)
