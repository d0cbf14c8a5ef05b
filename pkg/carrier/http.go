package carrier

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// HTTP carries trace context in HTTP headers. HTTP header names are case
// insensitive, so this is OpenTelemetry's own HeaderCarrier: on the wire
// HTTP/2 lowercases them anyway.
func HTTP(h http.Header) propagation.HeaderCarrier {
	return propagation.HeaderCarrier(h)
}
