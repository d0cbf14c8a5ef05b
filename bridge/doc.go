// Package bridge is the event bridge: Kafka -> NATS JetStream -> Pulsar with at-least-once delivery, dedup at each sink, trace context and DLQ.
package bridge
