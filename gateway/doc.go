// Package gateway is Shanhai's front door: routing to the services found in
// discovery, JWT verification, limits, breakers, retries and canary splits.
// Run is its whole wiring; cmd/gateway calls it with the process
// environment and cmd/shanhai hosts it beside the services.
package gateway
