package jsonkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
)

// Decode is json.Unmarshal of data into v, refusing besides a key no field
// of v takes (DisallowUnknownFields) and a key named twice in one object
// (Duplicate, compared as v reads the keys). encoding/json drops the first
// and keeps the last of the second, so a settings document with a misspelt
// or repeated name was applied with that field at its zero value, or at the
// value a reviewer did not see. It is for the settings documents a type
// decodes itself (payment's and the gateway's dynamic settings, whose
// UnmarshalJSON passes a type without that method, so as not to call
// itself); HTTP bodies have server.DecodeJSON, which answers each refusal
// with its own status. As with json.Unmarshal, a JSON null leaves v as it
// is, and v may be partly filled when an error is returned.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// One JSON value, as json.Unmarshal takes: the decoder alone would stop
	// after the first and leave the rest unread.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	// After the decode: the walk needs valid JSON, and the decode has refused
	// any key no field takes.
	if path := Duplicate(data, reflect.TypeOf(v)); path != "" {
		return fmt.Errorf("key %s appears twice", path)
	}
	return nil
}
