package server

import (
	"reflect"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
)

// duplicateKey returns the path of the first key data names twice in one
// object, compared as encoding/json matches keys into t (jsonkey.Duplicate:
// the rule every JSON the platform reads is held to, event payloads too).
// DecodeJSONLimit refuses such a body with a 400 naming that path: a body
// with "email" twice means one thing here and another to anything that read
// it on the way and kept the first.
func duplicateKey(data []byte, t reflect.Type) string { return jsonkey.Duplicate(data, t) }
