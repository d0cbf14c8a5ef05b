// Package event is the platform's event envelope: the CloudEvents 1.0 context attributes (id, type, source, time, subject)
// around a JSON payload, and its binary-mode mapping onto message headers.
//
// Binary mode keeps the payload untouched as the message value and carries the attributes as headers (ce_id, ce_type, ...),
// so brokers, bridges and archives can route and dedup on headers without parsing JSON. The mapping follows the CloudEvents
// Kafka protocol binding; the same header names are reused on NATS and Pulsar by the bridge.
//
// One departure from CloudEvents: time is required, as id, type and source are (Validate, FromHeaders). The
// specification makes it optional, but every producer of the platform writes it (New), so a message without one is
// not the platform's, and a consumer would date its fact to year 1; the bridge dead-letters it as an invalid envelope.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
)

// SpecVersion is the CloudEvents specification version this package writes and accepts.
const SpecVersion = "1.0"

// ContentType is the only data content type the platform publishes.
const ContentType = "application/json"

// Header names of the binary content mode.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
)

// Envelope is one event: who said what happened, about which entity, when, and the JSON data describing it.
type Envelope struct {
	// ID identifies the event; consumers dedup on it. New uses a UUIDv7 so ids also sort by creation time.
	ID string `json:"id"`
	// Type names what happened, e.g. "order.created".
	Type string `json:"type"`
	// Source names the producer as a URI reference, e.g. "/services/order".
	Source string `json:"source"`
	// Subject is the entity the event is about, e.g. the order id (optional).
	Subject string `json:"subject,omitempty"`
	// Time is when the fact happened, in UTC.
	Time time.Time `json:"time"`
	// Data is the JSON payload; it travels as the message value.
	Data json.RawMessage `json:"data"`
}

// New builds an envelope with a fresh UUIDv7 id and the current time, marshalling data to JSON.
func New(typ, source, subject string, data any) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("marshal %s data: %w", typ, err)
	}
	e := Envelope{
		ID:      id.String(),
		Type:    typ,
		Source:  source,
		Subject: subject,
		Time:    time.Now().UTC(),
		Data:    raw,
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// Headers returns the binary-mode headers for e: ce_specversion, ce_id, ce_type, ce_source, ce_time (RFC 3339, UTC),
// ce_subject when set, and content-type. Trace headers are added by whoever publishes (see package outbox).
func (e Envelope) Headers() map[string]string {
	h := map[string]string{
		HeaderSpecVersion: SpecVersion,
		HeaderID:          e.ID,
		HeaderType:        e.Type,
		HeaderSource:      e.Source,
		HeaderContentType: ContentType,
	}
	if !e.Time.IsZero() {
		h[HeaderTime] = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.Subject != "" {
		h[HeaderSubject] = e.Subject
	}
	return h
}

// Decode unmarshals the event's data into v. Data that names a key twice in
// one object, as encoding/json matches keys into v (jsonkey.Duplicate:
// case-folded where a key selects a struct field), is refused with an
// *AttributeError naming "data" (so errors.Is(err, ErrInvalid)), and v is
// left untouched: encoding/json would take the last copy, so
// {"order_id":"a",...,"order_id":"b"} acted on order b while the producer, or
// any reader that keeps the first copy, meant a. No producer of the platform
// writes such data; it is forged or corrupt, and acting on either copy would
// be a guess. The check is made here, not in FromHeaders, because only the
// reader knows v, and so which keys are one field; and it costs the bridge
// nothing, which checks envelopes but never decodes their data.
func (e Envelope) Decode(v any) error {
	if path := jsonkey.Duplicate(e.Data, reflect.TypeOf(v)); path != "" {
		// Quoted at most 80 bytes: a key may be a megabyte.
		return fmt.Errorf("decode %s %s data: %w", e.Type, e.ID,
			&AttributeError{Name: "data", Reason: fmt.Sprintf("key %.80q appears more than once in its object", path)})
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s %s data: %w", e.Type, e.ID, err)
	}
	return nil
}

// MaxAttributeBytes bounds ce_id, ce_type, ce_source and ce_subject. Consumers key database indexes on them (dedup on
// the id, the outbox on the subject), and a B-tree entry has a size limit (about 2.7 kB on PostgreSQL).
const MaxAttributeBytes = 1024

// Validate reports the first missing or malformed attribute as an *AttributeError: a missing id, type, source or time, an
// attribute over MaxAttributeBytes, not UTF-8 or holding a control character (CloudEvents allows neither, and
// PostgreSQL refuses to store them: a consumer would fail on its dedup insert and retry the message forever), a source
// that is not a URI reference, or data that is not JSON.
func (e Envelope) Validate() error {
	switch {
	case e.ID == "":
		return &AttributeError{Name: HeaderID, Reason: "missing"}
	case e.Type == "":
		return &AttributeError{Name: HeaderType, Reason: "missing"}
	case e.Source == "":
		return &AttributeError{Name: HeaderSource, Reason: "missing"}
	case e.Time.IsZero():
		// Optional in CloudEvents, required here: every producer of the
		// platform writes it (New), and a consumer handed a zero time would
		// order or age the fact as happening in year 1.
		return &AttributeError{Name: HeaderTime, Reason: "missing"}
	}
	for _, a := range [...]struct{ name, value string }{
		{HeaderID, e.ID}, {HeaderType, e.Type}, {HeaderSource, e.Source}, {HeaderSubject, e.Subject},
	} {
		if reason := badText(a.value); reason != "" {
			return &AttributeError{Name: a.name, Reason: reason}
		}
	}
	// CloudEvents requires a URI-reference; url.Parse is a lenient reading of
	// RFC 3986 (it lets a space through, say) but refuses what other SDKs
	// cannot parse at all: a bad percent-escape, an unclosed IPv6 host.
	if _, err := url.Parse(e.Source); err != nil {
		reason := "not a URI reference"
		var ue *url.Error
		if errors.As(err, &ue) {
			reason += ": " + ue.Err.Error() // without url.Error's repetition of the value
		}
		return &AttributeError{Name: HeaderSource, Reason: reason}
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return &AttributeError{Name: "data", Reason: "not valid JSON"}
	}
	return nil
}

// badText says what makes s unfit as a string attribute, or "" when nothing does.
func badText(s string) string {
	switch {
	case len(s) > MaxAttributeBytes:
		return fmt.Sprintf("%d bytes, more than %d", len(s), MaxAttributeBytes)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "contains a control character"
	}
	return ""
}

// ErrInvalid matches (with errors.Is) every error FromHeaders returns for a malformed message. A consumer that sees it
// should treat the message as poison: retrying will not fix it.
var ErrInvalid = errors.New("invalid event")

// AttributeError names the attribute that made a message unreadable as an event.
type AttributeError struct {
	Name   string // header name, or "data"
	Reason string // "missing", "want 1.0, got 0.3", ...
}

func (e *AttributeError) Error() string {
	return fmt.Sprintf("invalid event: %s: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *AttributeError) Is(target error) bool { return target == ErrInvalid }

// FromHeaders rebuilds an envelope from binary-mode headers and the message value. It rejects a missing or unsupported
// ce_specversion, a missing ce_id, ce_type, ce_source or ce_time, a ce_source that is not a URI reference, a ce_time
// that is not RFC 3339 or is the zero time, a content-type other than JSON, and data that is not valid JSON; each with an
// *AttributeError naming the attribute.
func FromHeaders(h map[string]string, data []byte) (Envelope, error) {
	switch v, ok := h[HeaderSpecVersion]; {
	case !ok || v == "":
		return Envelope{}, &AttributeError{Name: HeaderSpecVersion, Reason: "missing"}
	case v != SpecVersion:
		return Envelope{}, &AttributeError{Name: HeaderSpecVersion, Reason: fmt.Sprintf("want %s, got %s", SpecVersion, quote(v))}
	}
	if ct, ok := h[HeaderContentType]; ok && !isJSON(ct) {
		return Envelope{}, &AttributeError{Name: HeaderContentType, Reason: fmt.Sprintf("want %s, got %s", ContentType, quote(ct))}
	}
	e := Envelope{
		ID:      h[HeaderID],
		Type:    h[HeaderType],
		Source:  h[HeaderSource],
		Subject: h[HeaderSubject],
	}
	if len(data) > 0 {
		e.Data = json.RawMessage(append([]byte(nil), data...))
	}
	if ts, ok := h[HeaderTime]; ok && ts != "" {
		t, err := parseTime(ts)
		if err != nil {
			return Envelope{}, &AttributeError{Name: HeaderTime, Reason: "not RFC 3339: " + quote(ts)}
		}
		if t.IsZero() {
			// Validate would call it missing: the header is there, holding
			// the zero time, which Envelope cannot tell from none.
			return Envelope{}, &AttributeError{Name: HeaderTime, Reason: "the zero time, as good as none: " + quote(ts)}
		}
		e.Time = t.UTC()
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// maxQuote bounds how much of a bad header value a reason quotes.
const maxQuote = 80

// quote is v quoted for a reason, at most maxQuote runes of it and then its length. A header holds up to a record's
// size, and %q writes a control character in four bytes: quoted whole, a 1 MiB ce_time made a 4 MiB error, which the
// bridge writes into its dead letter; the DLQ topic refused that letter even without the record, for ever, and the
// record's partition bridged nothing more.
func quote(v string) string {
	if utf8.RuneCountInString(v) <= maxQuote {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%.*q... (%d bytes)", maxQuote, v, len(v))
}

// parseTime reads an RFC 3339 timestamp. RFC 3339 (section 5.6) also allows a lower-case "t" and "z", which
// time.Parse refuses; nothing else in the format is a letter, so upper-casing those two is exact.
func parseTime(ts string) (time.Time, error) {
	ts = strings.Map(func(r rune) rune {
		switch r {
		case 't':
			return 'T'
		case 'z':
			return 'Z'
		}
		return r
	}, ts)
	if !rfc3339Form(ts) {
		return time.Time{}, errors.New("not in RFC 3339's form")
	}
	return time.Parse(time.RFC3339Nano, ts)
}

// rfc3339Form reports whether ts is laid out as RFC 3339's date-time, with an offset of at most 23:59. time.Parse
// alone does not hold to that: when its strict RFC 3339 reading fails it reads ts with its general layout reader,
// which takes a one-digit hour, a comma before the fraction and an offset of 24 hours or of 60 minutes and more
// (+01:60 as +02:00), none of which other CloudEvents readers accept. The ranges of the date and time fields are
// left to time.Parse, which checks them.
func rfc3339Form(ts string) bool {
	const layout = "dddd-dd-ddTdd:dd:dd" // d: a digit; anything else stands for itself
	if len(ts) < len(layout) {
		return false
	}
	for i := 0; i < len(layout); i++ {
		if c := ts[i]; layout[i] == 'd' && !isDigit(c) || layout[i] != 'd' && c != layout[i] {
			return false
		}
	}
	rest := ts[len(layout):]
	if rest != "" && rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	if len(rest) != 6 || rest[0] != '+' && rest[0] != '-' || rest[3] != ':' ||
		!isDigit(rest[1]) || !isDigit(rest[2]) || !isDigit(rest[4]) || !isDigit(rest[5]) {
		return false
	}
	return rest[1:3] <= "23" && rest[4:6] <= "59"
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isJSON accepts "application/json" with optional parameters such as "; charset=utf-8".
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == ContentType
}
