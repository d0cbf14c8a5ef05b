// Package gateway is the gateway: the single entry point with discovery routing, JWT auth, limits, breakers, retry budgets, deadlines and canary routing.
package gateway
