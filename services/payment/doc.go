// Package payment is the payment service: consumes order.created, charges once through a simulated provider with fault injection, emits the result.
package payment
