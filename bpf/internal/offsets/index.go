package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Index is one executable's DWARF, read for every offset and result layout asked of it. f.DWARF() inflates and
// parses the debug sections anew at each call, and a lookup by name walks the entries from the start: attaching to
// one executable asks about fifteen times (the HTTP server's fields, the runtime's, each call probe's, each probed
// function's results), so each attach read the same DWARF that often, which made most of its latency. An Index
// checks the sections and parses the DWARF at its first lookup, walks the entries once to note where each struct
// type and function is, and afterwards reads only the entries a lookup names.
//
// It holds the inflated sections (tens of megabytes for a service) until dropped: the agent keeps one for the
// length of one attach. It is not safe for concurrent use.
type Index struct {
	f      *elf.File // nil for an Index of DWARF data alone (FromDWARFData)
	loaded bool
	err    error // the sections' check, or nil
	d      *dwarf.Data
	dErr   error // f.DWARF()'s: without DWARF the lookups fall back to the tables
	walked bool
	// Where the walk found each name, in the order of the entries: struct types (a name repeated in hostile input
	// has more than one), and functions with children (their parameters), outside any entry but a compile unit, as
	// lastResultRegister's walk saw them.
	structs map[string][]dwarf.Offset
	funcs   map[string]dwarf.Offset
	walkErr error // why the walk stopped before the end: a name not found before it fails with it
	// Counts for the tests that prove the reuse: DWARF parses and walks over all entries.
	parses, walks int
}

// NewIndex returns an Index of f that has read nothing yet.
func NewIndex(f *elf.File) *Index { return &Index{f: f} }

// load checks f's sections and parses its DWARF, once.
func (x *Index) load() error {
	if x.loaded {
		return x.err
	}
	x.loaded = true
	if err := CheckSections(x.f, math.MaxInt64); err != nil { // the ratio only: see CheckSections
		x.err = err
		return err
	}
	x.parses++
	x.d, x.dErr = x.f.DWARF()
	return nil
}

// walk notes where every struct type and function is, in one pass over the entries. It descends into every entry
// but a struct type (whose children are its members) and tracks whether an entry sits inside anything other than
// compile units, since lastResultRegister's walk skipped the children of everything else.
func (x *Index) walk() {
	if x.walked {
		return
	}
	x.walked = true
	x.walks++
	x.structs, x.funcs = map[string][]dwarf.Offset{}, map[string]dwarf.Offset{}
	r := &reader{Reader: x.d.Reader()}
	var open []bool // per entry whose children are being read: whether it is a compile unit
	inside := 0     // how many of them are not
	for {
		e, err := r.next()
		if err != nil {
			x.walkErr = fmt.Errorf("read dwarf: %w", err)
			return
		}
		if e == nil {
			return
		}
		if e.Tag == 0 {
			if n := len(open); n > 0 {
				if !open[n-1] {
					inside--
				}
				open = open[:n-1]
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		switch e.Tag {
		case dwarf.TagStructType:
			x.structs[name] = append(x.structs[name], e.Offset)
			if e.Children {
				r.SkipChildren()
			}
			continue
		case dwarf.TagSubprogram:
			if _, seen := x.funcs[name]; !seen && e.Children && inside == 0 {
				x.funcs[name] = e.Offset
			}
		}
		if e.Children {
			cu := e.Tag == dwarf.TagCompileUnit
			open = append(open, cu)
			if !cu {
				inside++
			}
		}
	}
}

// Resolve is the package's Resolve for the Index's executable.
func (x *Index) Resolve(fields ...Field) (map[Field]uint64, Source, error) {
	if err := x.load(); err != nil {
		return nil, FromDWARF, err
	}
	if x.dErr == nil {
		out, err := x.fromDWARF(fields...)
		return out, FromDWARF, err
	}
	goVersion, err := fallbackGoVersion(x.f)
	if err != nil {
		return nil, FromFallback, err
	}
	out := map[Field]uint64{}
	for _, fl := range fields {
		off, ok := fallback(goVersion, fl)
		if !ok {
			return nil, FromFallback, fmt.Errorf("no DWARF and no fallback offset for %s", fl)
		}
		out[fl] = off
	}
	return out, FromFallback, nil
}

// ErrorRegister is the package's ErrorRegister for the Index's executable.
func (x *Index) ErrorRegister(fn string) (int, Source, error) {
	if err := x.load(); err != nil {
		return 0, FromDWARF, err
	}
	if x.dErr != nil {
		r, ok := ErrorResult[fn]
		if !ok {
			return 0, FromFallback, fmt.Errorf("no DWARF and no fallback result layout for %s", fn)
		}
		if _, err := fallbackGoVersion(x.f); err != nil {
			return 0, FromFallback, fmt.Errorf("%s: %w", fn, err)
		}
		if err := checkModule(x.f, fn); err != nil {
			return 0, FromFallback, err
		}
		return r, FromFallback, nil
	}
	r, err := x.lastResultRegister(fn)
	return r, FromDWARF, err
}

// fromDWARF reads the fields' offsets from the struct types of their names, in the order the entries come, until
// every field is found: what a walk from the start would find, without the walk.
func (x *Index) fromDWARF(fields ...Field) (map[Field]uint64, error) {
	want := map[string]map[string]Field{} // struct name -> member -> field
	for _, fl := range fields {
		i := strings.LastIndexByte(string(fl), '.')
		if i < 0 {
			return nil, fmt.Errorf("bad field name %q", fl)
		}
		typ, member := string(fl[:i]), string(fl[i+1:])
		if want[typ] == nil {
			want[typ] = map[string]Field{}
		}
		want[typ][member] = fl
	}
	x.walk()
	var at []dwarf.Offset // every struct type of a wanted name, in the entries' order
	for name := range want {
		at = append(at, x.structs[name]...)
	}
	slices.Sort(at)
	out := map[Field]uint64{}
	for _, off := range at {
		if len(out) == len(fields) {
			break
		}
		r := &reader{Reader: x.d.Reader()}
		r.Seek(off)
		e, err := r.next()
		if err != nil {
			return nil, fmt.Errorf("read dwarf: %w", err)
		}
		if e == nil || !e.Children {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		members := want[name]
		for {
			c, err := r.next()
			if err != nil {
				return nil, fmt.Errorf("read dwarf: %w", err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			mname, _ := c.Val(dwarf.AttrName).(string)
			if fl, ok := members[mname]; ok && c.Tag == dwarf.TagMember {
				if loc, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok {
					out[fl] = uint64(loc)
				}
			}
			if c.Children {
				r.SkipChildren()
			}
		}
	}
	for _, fl := range fields {
		if _, ok := out[fl]; !ok {
			if x.walkErr != nil {
				return nil, x.walkErr
			}
			return nil, fmt.Errorf("dwarf has no %s", fl)
		}
	}
	return out, nil
}
