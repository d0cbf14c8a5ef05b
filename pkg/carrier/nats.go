package carrier

import (
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATSHeaders carries trace context in NATS message headers. nats.Header is
// case sensitive (unlike http.Header), so keys are stored lowercase as given.
type NATSHeaders nats.Header

// NATS adapts a message's headers; the map must be non-nil for Set (use
// nats.NewMsg or make(nats.Header)).
func NATS(h nats.Header) NATSHeaders { return NATSHeaders(h) }

// Get returns the first value under key, exactly or ignoring case (the
// first of Values, so the same one every time).
func (n NATSHeaders) Get(key string) string {
	if v := n[key]; len(v) > 0 {
		return v[0] // the usual case, without Values' copy
	}
	if vs := n.Values(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Values returns every value under key, then those under its other
// spellings (in key order, so the result does not depend on map order): see
// KafkaHeaders.Values.
func (n NATSHeaders) Values(key string) []string {
	vs := slices.Clone(n[key])
	for _, k := range otherSpellings(maps.Keys(n), key) {
		vs = append(vs, n[k]...)
	}
	return vs
}

// Set replaces key (in any case) with a single lowercase entry.
func (n NATSHeaders) Set(key, value string) {
	lower := strings.ToLower(key)
	for k := range n {
		if k != lower && strings.EqualFold(k, key) {
			delete(n, k)
		}
	}
	n[lower] = []string{value}
}

// Keys lists the header keys.
func (n NATSHeaders) Keys() []string {
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	return keys
}
