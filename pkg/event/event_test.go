package event_test

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
)

type created struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

func TestNewFillsAttributes(t *testing.T) {
	before := time.Now().UTC()
	e, err := event.New("order.created", "/services/order", "o-1", created{OrderID: "o-1", TotalCents: 1250})
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(e.ID)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q: want a UUIDv7 (err %v)", e.ID, err)
	}
	if e.Time.Before(before.Add(-time.Millisecond)) || e.Time.Location() != time.UTC {
		t.Fatalf("time %v: want now in UTC", e.Time)
	}
	if got := string(e.Data); got != `{"order_id":"o-1","total_cents":1250}` {
		t.Fatalf("data %s", got)
	}
	e2, _ := event.New("order.created", "/services/order", "o-1", nil)
	if e2.ID == e.ID {
		t.Fatal("two events share an id")
	}
}

func TestNewRejectsMissingAttributes(t *testing.T) {
	if _, err := event.New("", "/s", "", 1); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("missing type: %v", err)
	}
	if _, err := event.New("t", "", "", 1); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("missing source: %v", err)
	}
	if _, err := event.New("t", "/services/%zz", "", 1); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("source that is no URI reference: %v", err)
	}
	// The sources the platform uses: absolute paths, relative ones, URNs, URLs.
	for _, src := range []string{"/shanhai/user", "shanhai/bench", "urn:shanhai:order", "https://shanhai.dev/order"} {
		if _, err := event.New("t", src, "", 1); err != nil {
			t.Fatalf("source %q rejected: %v", src, err)
		}
	}
	if _, err := event.New("t", "/s", "", func() {}); err == nil {
		t.Fatal("unmarshallable data accepted")
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	e, err := event.New("payment.succeeded", "/services/payment", "p-9", map[string]any{"payment_id": "p-9", "amount_cents": 5})
	if err != nil {
		t.Fatal(err)
	}
	h := e.Headers()
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": e.ID, "ce_type": "payment.succeeded", "ce_source": "/services/payment",
		"ce_subject": "p-9", "ce_time": e.Time.Format(time.RFC3339Nano), "content-type": "application/json",
	}
	if !maps.Equal(h, want) {
		t.Fatalf("headers\n got %v\nwant %v", h, want)
	}
	got, err := event.FromHeaders(h, e.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Type != e.Type || got.Source != e.Source || got.Subject != e.Subject ||
		!got.Time.Equal(e.Time) || string(got.Data) != string(e.Data) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, e)
	}
	var v struct {
		PaymentID string `json:"payment_id"`
	}
	if err := got.Decode(&v); err != nil || v.PaymentID != "p-9" {
		t.Fatalf("decode: %v %+v", err, v)
	}
}

func TestHeadersOmitEmptySubject(t *testing.T) {
	e, _ := event.New("user.registered", "/services/user", "", map[string]string{"user_id": "u"})
	if _, ok := e.Headers()["ce_subject"]; ok {
		t.Fatal("empty subject written")
	}
}

func TestFromHeadersRejectsPoison(t *testing.T) {
	good := map[string]string{
		"ce_specversion": "1.0", "ce_id": "id-1", "ce_type": "order.created", "ce_source": "/services/order",
		"ce_time": "2026-01-02T03:04:05Z", "content-type": "application/json",
	}
	with := func(k, v string) map[string]string {
		h := maps.Clone(good)
		if v == "<delete>" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	cases := []struct {
		name string
		h    map[string]string
		data string
		attr string
	}{
		{"no specversion", with("ce_specversion", "<delete>"), `{}`, "ce_specversion"},
		{"old specversion", with("ce_specversion", "0.3"), `{}`, "ce_specversion"},
		{"no id", with("ce_id", "<delete>"), `{}`, "ce_id"},
		{"empty type", with("ce_type", ""), `{}`, "ce_type"},
		{"no source", with("ce_source", "<delete>"), `{}`, "ce_source"},
		{"bad time", with("ce_time", "yesterday"), `{}`, "ce_time"},
		// Optional in CloudEvents, but every producer here writes it: one without it read as year 1.
		{"no time", with("ce_time", "<delete>"), `{}`, "ce_time"},
		{"empty time", with("ce_time", ""), `{}`, "ce_time"},
		{"xml", with("content-type", "application/xml"), `{}`, "content-type"},
		{"bad json", good, `{"order_id":`, "data"},
		// What PostgreSQL cannot store in the consumer's dedup row: a retry loop, not a dead letter, before.
		{"id not UTF-8", with("ce_id", "id-\xff"), `{}`, "ce_id"},
		{"NUL in id", with("ce_id", "id\x00-1"), `{}`, "ce_id"},
		{"id over the limit", with("ce_id", strings.Repeat("i", event.MaxAttributeBytes+1)), `{}`, "ce_id"},
		{"newline in type", with("ce_type", "order.created\n"), `{}`, "ce_type"},
		{"source not UTF-8", with("ce_source", "/services/\xc3"), `{}`, "ce_source"},
		// CloudEvents: a source is a URI-reference; other SDKs refuse these.
		{"source with a bad escape", with("ce_source", "/services/%zz"), `{}`, "ce_source"},
		{"source with an unclosed IPv6 host", with("ce_source", "http://[::1/order"), `{}`, "ce_source"},
		{"subject over the limit", with("ce_subject", strings.Repeat("s", 1<<20)), `{}`, "ce_subject"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := event.FromHeaders(c.h, []byte(c.data))
			var ae *event.AttributeError
			if !errors.As(err, &ae) || ae.Name != c.attr || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("err %v: want an AttributeError naming %s", err, c.attr)
			}
			if !strings.Contains(err.Error(), c.attr) {
				t.Fatalf("message %q does not name %s", err, c.attr)
			}
		})
	}
	// Optional attributes may be absent, and JSON content types may carry parameters.
	e, err := event.FromHeaders(with("content-type", "application/json; charset=utf-8"), []byte(`{"a":1}`))
	if err != nil || !e.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("valid message rejected: %v", err)
	}
	if _, err := event.FromHeaders(with("content-type", "<delete>"), nil); err != nil {
		t.Fatalf("absent content type and data rejected: %v", err)
	}
	if _, err := event.FromHeaders(with("ce_subject", "订单-"+strings.Repeat("s", event.MaxAttributeBytes-7)), nil); err != nil {
		t.Fatalf("non-ASCII subject of exactly the limit rejected: %v", err)
	}
}

func TestFromHeadersCopiesData(t *testing.T) {
	buf := []byte(`{"a":1}`)
	h := map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_type": "t", "ce_source": "/s", "ce_time": "2026-01-02T03:04:05Z"}
	e, err := event.FromHeaders(h, buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[1] = 'X' // a Kafka reader reuses its buffers
	if string(e.Data) != `{"a":1}` {
		t.Fatalf("data aliases the caller's buffer: %s", e.Data)
	}
}

// RFC 3339 (section 5.6) lets a timestamp write its "T" and "Z" in lower case, and CloudEvents' ce_time is an RFC 3339
// timestamp: such an event is valid, not poison for the dead letters. Go's time.Parse takes upper case only.
func TestFromHeadersTakesLowerCaseTimeLetters(t *testing.T) {
	want := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, ts := range []string{"2026-01-02t03:04:05.6z", "2026-01-02t05:04:05.6+02:00", "2026-01-02T03:04:05.6z"} {
		e, err := event.FromHeaders(map[string]string{
			"ce_specversion": "1.0", "ce_id": "id-1", "ce_type": "order.created", "ce_source": "/services/order", "ce_time": ts,
		}, []byte(`{}`))
		if err != nil || !e.Time.Equal(want) {
			t.Errorf("ce_time %q: %v, %v; want %v", ts, e.Time, err, want)
		}
	}
}

// TestDecodeRefusesAKeyTwice: encoding/json keeps the last of two copies of a
// key, and matches keys to fields regardless of case, so data naming a field
// twice was decoded as its last copy while the producer, or a reader keeping
// the first, meant another. Such data is refused as invalid, v untouched;
// keys that are two entries of a map, or fields named apart, decode.
func TestDecodeRefusesAKeyTwice(t *testing.T) {
	type result struct {
		OrderID string            `json:"order_id"`
		Amount  int64             `json:"amount_cents"`
		Labels  map[string]string `json:"labels"`
	}
	for _, tc := range []struct {
		data string
		path string // "" when it decodes
	}{
		{`{"order_id":"a","amount_cents":1,"order_id":"b"}`, "order_id"},
		{`{"order_id":"a","ORDER_ID":"b"}`, "ORDER_ID"},
		{`{"amount_cents":100,"amount_\u0063ents":1}`, "amount_cents"},
		{`{"order_id":"a","labels":{"k":"1","k":"2"}}`, "labels.k"},
		{`{"order_id":"a","extra":1,"EXTRA":2}`, "EXTRA"}, // unknown to v, but one field to a reader that knows it
		{`{"order_id":"a","labels":{"k":"1","K":"2"}}`, ""},
		{`{"order_id":"a","amount_cents":5,"other":{"order_id":"b"}}`, ""},
	} {
		e := event.Envelope{ID: "id-1", Type: "payment.succeeded", Source: "/s", Data: []byte(tc.data)}
		v := result{OrderID: "untouched"}
		err := e.Decode(&v)
		if tc.path == "" {
			if err != nil || v.OrderID != "a" {
				t.Errorf("%s: %+v, %v", tc.data, v, err)
			}
			continue
		}
		var ae *event.AttributeError
		if !errors.As(err, &ae) || ae.Name != "data" || !errors.Is(err, event.ErrInvalid) ||
			!strings.Contains(err.Error(), strconv.Quote(tc.path)) || !strings.Contains(err.Error(), "id-1") {
			t.Errorf("%s: err %v, want an invalid data error naming %q and the event", tc.data, err, tc.path)
		}
		if v.OrderID != "untouched" {
			t.Errorf("%s: decoded into v (%+v) though refused", tc.data, v)
		}
	}
	// A megabyte key is quoted cut short.
	long := strings.Repeat("k", 1<<20)
	e := event.Envelope{ID: "id-2", Type: "t", Source: "/s", Data: []byte(`{"` + long + `":1,"` + long + `":2}`)}
	if err := e.Decode(&map[string]int{}); !errors.Is(err, event.ErrInvalid) || len(fmt.Sprint(err)) > 300 {
		t.Errorf("long key: err of %d bytes: %.200v", len(fmt.Sprint(err)), err)
	}
}

// TestFromHeadersRefusesTimesOutsideRFC3339: time.Parse, asked for RFC 3339, falls back to its general layout reader
// when the strict reading fails, and that one takes what RFC 3339 (section 5.6) has no room for: a one-digit hour, a
// comma before the fraction, an offset of 24 hours or of 60 minutes and more (+01:60 read as +02:00). The bridge then
// carried such an event as valid to consumers whose CloudEvents SDKs refuse it; it is poison, named as ce_time.
func TestFromHeadersRefusesTimesOutsideRFC3339(t *testing.T) {
	h := func(ts string) map[string]string {
		return map[string]string{
			"ce_specversion": "1.0", "ce_id": "id-1", "ce_type": "order.created", "ce_source": "/services/order", "ce_time": ts,
		}
	}
	for _, ts := range []string{
		"2026-01-02T3:04:05Z", "2026-01-02T03:04:05,6Z", "2026-01-02T03:04:05+24:00", "2026-01-02T03:04:05+01:60",
		"2026-01-02T03:04:05-00:99",
	} {
		_, err := event.FromHeaders(h(ts), []byte(`{}`))
		var ae *event.AttributeError
		if !errors.As(err, &ae) || ae.Name != event.HeaderTime {
			t.Errorf("ce_time %q: err %v; want an AttributeError naming ce_time", ts, err)
		}
	}
	// The edges RFC 3339 does allow.
	for ts, want := range map[string]time.Time{
		"2026-01-02T03:04:05.123456789Z":    time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		"2026-01-02T03:04:05.5-23:59":       time.Date(2026, 1, 3, 3, 3, 5, 500_000_000, time.UTC),
		"2026-01-02T03:04:05+23:59":         time.Date(2026, 1, 1, 3, 5, 5, 0, time.UTC),
		"2026-01-02T03:04:05-00:00":         time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02t03:04:05.000000000001z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	} {
		e, err := event.FromHeaders(h(ts), []byte(`{}`))
		if err != nil || !e.Time.Equal(want) {
			t.Errorf("ce_time %q: %v, %v; want %v", ts, e.Time, err, want)
		}
	}
}

// TestFromHeadersQuotesAtMost80BytesOfABadValue: the reasons for a bad ce_specversion, content-type or ce_time quoted
// the whole value, and %q writes a control character in four bytes: a 1 MB header gave a 4 MB error. The bridge
// writes that text into its dead letter, whose topic takes a record of about 1 MB: refused even without the record's
// key, value and headers, the letter was retried for ever and its partition bridged nothing more.
func TestFromHeadersQuotesAtMost80BytesOfABadValue(t *testing.T) {
	huge := strings.Repeat("\x01", 1<<20)
	for _, name := range []string{event.HeaderSpecVersion, event.HeaderContentType, event.HeaderTime} {
		h := map[string]string{
			"ce_specversion": "1.0", "ce_id": "id-1", "ce_type": "order.created", "ce_source": "/services/order",
			name: huge,
		}
		_, err := event.FromHeaders(h, []byte(`{}`))
		var ae *event.AttributeError
		if !errors.As(err, &ae) || ae.Name != name {
			t.Fatalf("%s of 1 MiB: err %.200v; want an AttributeError naming %s", name, err, name)
		}
		if n := len(err.Error()); n > 400 {
			t.Errorf("%s of 1 MiB: the error is %d bytes, want a quote of at most 80 bytes of the value", name, n)
		}
	}
}

// TestValidateRequiresTime: an envelope built without a time (not by New)
// was stored by outbox.Add with no ce_time, and its consumers read the fact
// as happening in year 1.
func TestValidateRequiresTime(t *testing.T) {
	e, err := event.New("order.created", "/services/order", "o-1", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	e.Time = time.Time{}
	var ae *event.AttributeError
	if err := e.Validate(); !errors.As(err, &ae) || ae.Name != event.HeaderTime || ae.Reason != "missing" {
		t.Fatalf("err %v: want ce_time missing", err)
	}
}

// TestFromHeadersNamesAZeroTime: a ce_time holding the zero time
// (0001-01-01T00:00:00Z) was refused as "missing", sending whoever read the
// dead letter to look for a header that is there.
func TestFromHeadersNamesAZeroTime(t *testing.T) {
	h := map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_type": "t", "ce_source": "/s", "ce_time": "0001-01-01T00:00:00Z"}
	_, err := event.FromHeaders(h, nil)
	var ae *event.AttributeError
	if !errors.As(err, &ae) || ae.Name != event.HeaderTime || ae.Reason == "missing" || !strings.Contains(ae.Reason, "0001-01-01") {
		t.Fatalf("err %v: want ce_time refused as the zero time it holds, not as missing", err)
	}
}
