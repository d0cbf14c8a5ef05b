// Package jsonkey finds the object keys encoding/json reads ambiguously. encoding/json keeps the last of two equal keys,
// and matches a key to a struct field case-insensitively (even "ſ" as "s" and the Kelvin sign as "k"), while many other
// readers keep the first key and compare exactly. So JSON that names one field twice means one thing to a Go service and
// another to whatever read it on the way (a WAF, an audit log, the service that produced it, another consumer): the
// platform refuses such JSON wherever it reads it, HTTP bodies (pkg/server.DecodeJSON) and event payloads
// (pkg/event.Envelope.Decode) alike, with this one rule.
package jsonkey

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Duplicate returns the path of the first object key that appears twice in
// one object of the JSON value data ("items[1].sku"), or "" if none does.
// t is the type data is decoded into: in an object that fills a struct, keys
// are compared as encoding/json matches them to fields, by the field they
// set (the exact name first, else the first field whose name folds equal),
// and a key no field takes case-folded, since another struct may take it;
// in any other object (a map's, or one decoded into an any, a
// json.RawMessage or a type that decodes itself) keys are compared as they
// are, as "env" and "ENV" are two entries of a map. A nil t knows nothing:
// every key is compared as it is. A map's keys are compared as strings:
// with integer or encoding.TextUnmarshaler keys ("1" and "01", a UUID in
// two cases) encoding/json makes one entry of two spellings, which this does
// not see; no type the platform decodes has such a map. Keys are compared
// unescaped ("a" and "\u0061" are one key). data should be valid JSON: the
// walk stops at the first syntax error, reporting what it found before it.
// encoding/json has no option for this (encoding/json/v2, which has, is not
// in the standard library yet), so the tokens are walked here; first a byte
// scan (plain), which allocates nothing, answers for the JSON the platform
// writes itself: the walk alone made a consumer's Decode of an order.created
// about four times as slow, with twelve times the allocations.
func Duplicate(data []byte, t reflect.Type) string {
	if plain(data) {
		return ""
	}
	return walk(data, t)
}

// maxPlainKeys bounds the keys of one object plain compares pairwise; an
// object with more is left to the walk, which compares through a map.
const maxPlainKeys = 32

// plain reports, without allocating for the common JSON the platform reads,
// that data names no key twice in one object by any comparison Duplicate
// makes: every key is ASCII without escapes, and no two keys of one object
// are equal ignoring ASCII case. For such keys an unescaped key is its bytes,
// and case folding (encoding/json's, to the smallest rune of each rune's
// orbit) is ASCII upper-casing, so two keys that differ so never select one
// field nor one map entry. Anything else (an escape, a non-ASCII key, which
// may fold with another or be invalid UTF-8 that decodes to U+FFFD, two keys
// equal but for case, which a map takes apart, a large object, unbalanced
// data) returns false, for walk to decide. Keys are found as walk finds them:
// the first string after "{" or after a "," in an object.
func plain(data []byte) bool {
	var (
		keyBuf   [maxPlainKeys][]byte
		startBuf [16]int
		keys     = keyBuf[:0]   // the keys of the open objects, the innermost's last
		starts   = startBuf[:0] // per open container: where its keys start in keys, -1 for an array
		wantKey  bool
	)
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			starts = append(starts, len(keys))
			wantKey = true
		case '[':
			starts = append(starts, -1)
			wantKey = false
		case '}', ']':
			if len(starts) == 0 {
				return false
			}
			if s := starts[len(starts)-1]; s >= 0 {
				keys = keys[:s]
			}
			starts = starts[:len(starts)-1]
			wantKey = false
		case ',':
			wantKey = len(starts) > 0 && starts[len(starts)-1] >= 0
		case '"':
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if c := data[j]; c == '\\' || c >= utf8.RuneSelf {
					if wantKey {
						return false
					}
					if c == '\\' {
						j++ // the escaped byte, which may be a quote
					}
				}
			}
			if j >= len(data) {
				return false
			}
			if wantKey {
				key, own := data[i+1:j], keys[starts[len(starts)-1]:]
				if len(own) == maxPlainKeys {
					return false
				}
				for _, k := range own {
					if bytes.EqualFold(k, key) {
						return false
					}
				}
				keys = append(keys, key)
				wantKey = false
			}
			i = j
		}
	}
	return len(starts) == 0
}

// maxDepth is how deep encoding/json reads nested values; it refuses data
// nested deeper (its scanner's maxNestingDepth), so walk stops there.
const maxDepth = 10000

// walk is Duplicate by encoding/json's tokens.
func walk(data []byte, t reflect.Type) string {
	type frame struct {
		keys    map[string]bool // nil in an array
		fold    bool            // keys name a struct's fields
		t       reflect.Type    // what the container decodes into; nil: nothing known
		key     string          // the key whose value comes next, in an object
		index   int             // the next element's index, in an array
		wantKey bool
	}
	var stack []*frame
	// path is the path of the value about to start in the innermost frame,
	// from each open container's key or index. It is built only for the
	// answer: built per level on the way down, the paths of data nested n
	// deep took memory in n squared (1.4 GB for 30 KB of "[").
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.keys == nil {
				b.WriteByte('[')
				b.WriteString(strconv.Itoa(f.index))
				b.WriteByte(']')
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	// child is the type of the value about to start in the innermost frame.
	child := func() reflect.Type {
		if len(stack) == 0 {
			return t
		}
		f := stack[len(stack)-1]
		if f.keys == nil {
			return elemType(f.t)
		}
		switch {
		case f.fold:
			_, ct := structFields(f.t).lookup(f.key)
			return ct
		case f.t != nil && f.t.Kind() == reflect.Map:
			return f.t.Elem()
		}
		return nil
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
					seen := key
					if f.fold {
						// The field the key sets; an unknown key
						// was refused by the decode already.
						seen, _ = structFields(f.t).lookup(key)
					}
					f.key = key
					if f.keys[seen] {
						return path()
					}
					f.keys[seen] = true
					f.wantKey = false
					continue
				}
			}
		}
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') && len(stack) == maxDepth {
			// encoding/json refuses the data: none of its keys is read.
			return ""
		}
		switch tok {
		case json.Delim('{'):
			ct := decodedAs(child())
			fold := ct != nil && ct.Kind() == reflect.Struct
			stack = append(stack, &frame{keys: map[string]bool{}, fold: fold, t: ct, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{t: decodedAs(child())})
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

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodedAs is the type encoding/json fills from a value decoded into t:
// pointers followed, and nil (nothing known) for a type that decodes itself
// or an interface, whose objects become maps, taken key by key.
func decodedAs(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	if p := reflect.PointerTo(t); p.Implements(jsonUnmarshaler) || p.Implements(textUnmarshaler) {
		return nil
	}
	return t
}

// elemType is the type of an element of an array decoded into t, or nil.
func elemType(t reflect.Type) reflect.Type {
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		return t.Elem()
	}
	return nil
}

// fields maps a struct's JSON field names to their types, and case-folded
// names to the field they select.
type fields struct {
	exact  map[string]reflect.Type
	folded map[string]string
}

// lookup returns the name and type of the field key sets, found as
// encoding/json finds it: the exact name first, else one that folds equal
// ("EMAIL" sets email, but "ID" sets ID where the struct has both id and
// ID). A key no field takes is returned folded, with no type.
func (f fields) lookup(key string) (string, reflect.Type) {
	if t, ok := f.exact[key]; ok {
		return key, t
	}
	folded := foldKey(key)
	if name, ok := f.folded[folded]; ok {
		return name, f.exact[name]
	}
	return folded, nil
}

var fieldCache sync.Map // reflect.Type → fields

// structFields returns the JSON fields of struct type t as encoding/json
// finds them: embedded structs' fields promoted breadth first, each type
// expanded once, at its shallowest depth; of fields named alike the
// shallowest wins, at one depth the only tagged one, else none (two
// embedded structs' fields of one name cancel out, and a key of that name
// is matched by folding to another field, as encoding/json does).
func structFields(t reflect.Type) fields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(fields)
	}
	type candidate struct {
		name   string
		index  []int // the path of field indexes from t, in field order
		typ    reflect.Type
		tagged bool
	}
	type level struct {
		typ   reflect.Type
		index []int
	}
	var cands []candidate
	next := []level{{typ: t}}
	var count map[reflect.Type]int // how often each type of the current depth is embedded there
	nextCount := map[reflect.Type]int{t: 1}
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next, count, nextCount = nil, nextCount, map[reflect.Type]int{}
		for _, l := range current {
			if visited[l.typ] {
				continue
			}
			visited[l.typ] = true
			for i := range l.typ.NumField() {
				sf := l.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(append([]int(nil), l.index...), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					c := candidate{name: name, index: index, typ: sf.Type, tagged: name != ""}
					if c.name == "" {
						c.name = sf.Name
					}
					cands = append(cands, c)
					if count[l.typ] > 1 {
						// The type is embedded twice at this depth: its
						// fields are named twice, and cancel out.
						cands = append(cands, c)
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, level{typ: ft, index: index})
				}
			}
		}
	}
	// The dominant field of each name: the shallowest, and at one depth
	// the only tagged one; none when that is not one field.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(len(a.index), len(b.index)))
	})
	var kept []candidate
	for i := 0; i < len(cands); {
		j := i + 1
		for j < len(cands) && cands[j].name == cands[i].name {
			j++
		}
		group := cands[i:j]
		i = j
		top := group[:1]
		for len(top) < len(group) && len(group[len(top)].index) == len(group[0].index) {
			top = group[:len(top)+1]
		}
		if len(top) == 1 {
			kept = append(kept, top[0])
			continue
		}
		var tagged []candidate
		for _, c := range top {
			if c.tagged {
				tagged = append(tagged, c)
			}
		}
		if len(tagged) == 1 {
			kept = append(kept, tagged[0])
		}
	}
	// In field order, the first of two names that fold equal is the one a
	// folded key sets.
	slices.SortFunc(kept, func(a, b candidate) int { return slices.Compare(a.index, b.index) })
	f := fields{exact: map[string]reflect.Type{}, folded: map[string]string{}}
	for _, c := range kept {
		f.exact[c.name] = c.typ
		if _, ok := f.folded[foldKey(c.name)]; !ok {
			f.folded[foldKey(c.name)] = c.name
		}
	}
	v, _ := fieldCache.LoadOrStore(t, f)
	return v.(fields)
}

// validTag reports whether encoding/json takes name from a json tag as the
// field's name; it names the field by its Go name otherwise.
func validTag(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}

// foldKey maps every rune of s to the smallest rune of its Unicode simple
// case-folding orbit, as encoding/json folds a key it looks a field up by, so
// two keys fold equal exactly when bytes.EqualFold says they are equal.
// Upper-casing the lower case of each rune is not the same: it takes the
// dotless "ı" for "i", which encoding/json does not, and keeps U+0390 and
// U+1FD3 apart, which it does not.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}
