package carrier

import (
	"strings"

	"github.com/segmentio/kafka-go"
)

// KafkaHeaders carries trace context in a kafka-go message's headers. It
// holds a pointer to the slice so Set can append to the message's own
// headers.
type KafkaHeaders struct{ h *[]kafka.Header }

// Kafka adapts a message's headers: carrier.Kafka(&msg.Headers).
func Kafka(h *[]kafka.Header) KafkaHeaders { return KafkaHeaders{h} }

// Get returns the first header whose key matches, exactly or ignoring case.
func (k KafkaHeaders) Get(key string) string {
	for _, h := range *k.h {
		if h.Key == key {
			return string(h.Value)
		}
	}
	for _, h := range *k.h {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// Values returns the value of every header whose key matches, ignoring case,
// in message order: propagation.Baggage reads them all (propagation's
// ValuesGetter), as W3C baggage lets a list be split over several headers.
func (k KafkaHeaders) Values(key string) []string {
	var vs []string
	for _, h := range *k.h {
		if strings.EqualFold(h.Key, key) {
			vs = append(vs, string(h.Value))
		}
	}
	return vs
}

// Set replaces every header with this key (any case) by one lowercase
// header; Kafka allows repeated keys, and two traceparents would be ambiguous.
func (k KafkaHeaders) Set(key, value string) {
	key = strings.ToLower(key)
	hs := (*k.h)[:0:0]
	for _, h := range *k.h {
		if !strings.EqualFold(h.Key, key) {
			hs = append(hs, h)
		}
	}
	*k.h = append(hs, kafka.Header{Key: key, Value: []byte(value)})
}

// Keys lists the header keys.
func (k KafkaHeaders) Keys() []string {
	keys := make([]string, 0, len(*k.h))
	for _, h := range *k.h {
		keys = append(keys, h.Key)
	}
	return keys
}
