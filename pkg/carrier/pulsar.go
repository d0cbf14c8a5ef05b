package carrier

import (
	"maps"
	"strings"
)

// PulsarProperties carries trace context in Pulsar message properties
// (ProducerMessage.Properties, Message.Properties()). It takes the plain map
// so this package does not pull in the Pulsar client.
type PulsarProperties map[string]string

// Pulsar adapts a message's properties; the map must be non-nil for Set.
func Pulsar(p map[string]string) PulsarProperties { return PulsarProperties(p) }

// Get returns the value under key, exactly or ignoring case (the first of
// Values, so the same one every time).
func (p PulsarProperties) Get(key string) string {
	if v, ok := p[key]; ok {
		return v // the usual case, without Values' slice
	}
	if vs := p.Values(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Values returns the value under key, then those under its other spellings
// (in key order): see KafkaHeaders.Values.
func (p PulsarProperties) Values(key string) []string {
	var vs []string
	if v, ok := p[key]; ok {
		vs = append(vs, v)
	}
	for _, k := range otherSpellings(maps.Keys(p), key) {
		vs = append(vs, p[k])
	}
	return vs
}

// Set replaces key (in any case) with a single lowercase entry.
func (p PulsarProperties) Set(key, value string) {
	lower := strings.ToLower(key)
	for k := range p {
		if k != lower && strings.EqualFold(k, key) {
			delete(p, k)
		}
	}
	p[lower] = value
}

// Keys lists the property keys.
func (p PulsarProperties) Keys() []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	return keys
}
