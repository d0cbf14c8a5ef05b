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
	// ErrDeadLetterRecorded is Repository.SaveDeadLetter's answer for a dead
	// letter whose message is already recorded (a redelivery of a message
	// whose termination was lost): nothing was written, and the message is
	// safely recorded, so it is no failure to retry; but it is no new dead
	// letter either, and a caller counting dead letters must not count it.
	// An error rather than a second result so that every caller that only
	// needs "is it recorded" keeps its one err check, and the one that
	// counts (the consumer) asks with errors.Is.
	ErrDeadLetterRecorded = errors.New("dead letter already recorded")
)
