package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
)

// duplicateKey returns the path of the first object key that appears twice
// in one object of the JSON value data ("items[1].sku"), or "" if none does.
// encoding/json keeps the last of two equal keys and matches keys to fields
// without regard to case, while other parsers keep the first, so a body with
// `"email"` twice (or `"email"` and `"EMAIL"`) means one thing here and
// another to anything that read it on the way (a WAF, an audit log): such a
// body is refused rather than guessed at. Keys are compared case-folded, as
// encoding/json matches them. data must be valid JSON (DecodeJSONLimit
// calls this after the decode succeeded). encoding/json has no option for
// this (encoding/json/v2, which has, is not in the standard library yet), so
// the tokens are walked here.
func duplicateKey(data []byte) string {
	type frame struct {
		keys    map[string]bool // nil in an array
		path    string
		key     string // the key whose value comes next, in an object
		index   int    // the next element's index, in an array
		wantKey bool
	}
	var stack []*frame
	// child is the path of the value about to start in the innermost frame.
	child := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.keys == nil {
			return f.path + "[" + strconv.Itoa(f.index) + "]"
		}
		if f.path == "" {
			return f.key
		}
		return f.path + "." + f.key
	}
	// done ends a value in the innermost frame.
	done := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.keys == nil {
			f.index++
		} else {
			f.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are not needed, and this keeps them unparsed
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if len(stack) > 0 {
			if f := stack[len(stack)-1]; f.keys != nil && f.wantKey {
				if key, ok := tok.(string); ok {
					folded := foldKey(key)
					f.key = key
					if f.keys[folded] {
						return child()
					}
					f.keys[folded] = true
					f.wantKey = false
					continue
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, path: child(), wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{path: child()})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return ""
			}
			done()
		default:
			if len(stack) == 0 {
				return ""
			}
			done()
		}
	}
}

// foldKey maps every rune of s to the smallest rune of its Unicode simple
// case-folding orbit, so two keys fold equal exactly when bytes.EqualFold
// (what encoding/json matches field names with) says they are equal.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}
