// Package pkg is the root of Shanhai's shared middleware: every binary in the
// platform starts, observes, limits, discovers and publishes through the small
// packages below it (config, telemetry, server, limit, breaker, retry,
// discovery, event, outbox, ...). Nothing is exported from here.
package pkg
