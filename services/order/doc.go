// Package order is the order service: product catalogue, idempotent order creation with an outbox, and the order side of the payment saga.
package order
