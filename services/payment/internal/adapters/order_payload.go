package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// decodeOrder decodes the payload of an order.created or order.cancelled.
// A payload whose object names one member twice is refused as invalid
// (wrapping payment.ErrInvalid) before it is decoded: encoding/json keeps
// the last of the two, and matches member names to fields regardless of
// case, so {"total_cents":100,"TOTAL_CENTS":1} was charged 1 while a reader
// that keeps the first member (many do) saw an order of 100. The order
// service marshals its events and never writes such a payload, so one is
// forged or corrupt, and charging or cancelling on either reading would be
// a guess.
func decodeOrder(env event.Envelope) (OrderCreatedData, error) {
	var d OrderCreatedData
	if err := uniqueMembers(env.Data); err != nil {
		return d, fmt.Errorf("decode %s %s data: %w", env.Type, env.ID, err)
	}
	if err := env.Decode(&d); err != nil {
		return d, err
	}
	return d, nil
}

// uniqueMembers refuses a JSON object two of whose member names
// encoding/json would take for one: equal under Unicode simple case
// folding. Only the top level is read: it is all decodeOrder decodes.
// Anything that is not a readable object is left to the decoder to refuse
// with its own error.
func uniqueMembers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		folded := foldName(name)
		if first, ok := seen[folded]; ok {
			// Quoted at most 80 bytes each: a name may be a megabyte.
			return fmt.Errorf("%w: the payload names member %.80q twice (also as %.80q): which one counts is ambiguous", payment.ErrInvalid, first, name)
		}
		seen[folded] = name
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// foldName maps every name encoding/json matches case-insensitively to one
// string: it compares names as bytes.EqualFold does, under which a rune
// equals its upper and lower cases (and U+017F ſ equals s, U+212A K equals
// k), which upper-casing the lower case of each rune captures.
func foldName(name string) string {
	var b []byte
	for _, r := range name {
		b = utf8.AppendRune(b, unicode.ToUpper(unicode.ToLower(r)))
	}
	return string(b)
}
