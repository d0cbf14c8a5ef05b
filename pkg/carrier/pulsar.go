package carrier

import "strings"

// PulsarProperties carries trace context in Pulsar message properties
// (ProducerMessage.Properties, Message.Properties()). It takes the plain map
// so this package does not pull in the Pulsar client.
type PulsarProperties map[string]string

// Pulsar adapts a message's properties; the map must be non-nil for Set.
func Pulsar(p map[string]string) PulsarProperties { return PulsarProperties(p) }

// Get returns the value under key, exactly or ignoring case.
func (p PulsarProperties) Get(key string) string {
	if v, ok := p[key]; ok {
		return v
	}
	for k, v := range p {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
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
