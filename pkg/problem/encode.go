package problem

import (
	"encoding/json"
	"io"
)

func writeJSON(w io.Writer, d Details) error {
	enc := json.NewEncoder(w)
	// Details are read by people as often as by programs; keep "<" and "&" as
	// they are instead of \u003c escapes.
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}
