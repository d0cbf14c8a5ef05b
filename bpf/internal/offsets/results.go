package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"runtime/debug"
	"strings"
)

// ErrorResult holds, for every function whose error a probe reads at its RETs, the register (1-based, in ABI order
// RAX, RBX, RCX, RDI, ...) holding the itab word of its last result, the error. It is the fallback for binaries
// without DWARF and is checked against DWARF by the tests for the versions go.mod pins (go-redis v9.23.0's _process,
// for one, returns four values).
var ErrorResult = map[string]int{
	"net/http.(*Transport).roundTrip":                                       2, // (*Response, error)
	"database/sql.(*DB).queryDC":                                            2, // (*Rows, error)
	"database/sql.(*DB).execDC":                                             3, // (Result, error)
	"github.com/redis/go-redis/v9.(*baseClient)._process":                   4, // (retry, forced bool, cn *pool.Conn, err error)
	"github.com/redis/go-redis/v9.(*baseClient).generalProcessPipelineFrom": 1, // error (the pipeline probes' exit)
	"github.com/segmentio/kafka-go.(*Writer).WriteMessages":                 1, // error
	"github.com/nats-io/nats%2ego.(*Conn).publish":                          1, // error
	"github.com/apache/pulsar-client-go/pulsar.(*producer).Send":            3, // (MessageID, error)
}

// ResultModules pins the version of each library module that ErrorResult's functions come from: the one the
// workspace selects, which testdata/clients links and TestErrorResultsMatchDWARF checks the table against. Another
// version may return other results (go-redis's _process has changed its results before).
var ResultModules = map[string]string{
	"github.com/redis/go-redis/v9":       "v9.23.0",
	"github.com/segmentio/kafka-go":      "v0.4.51",
	"github.com/nats-io/nats.go":         "v1.55.0",
	"github.com/apache/pulsar-client-go": "v0.19.0",
}

// ErrorRegister says which register holds fn's error result at its RETs: from DWARF when f has it, else from
// ErrorResult, for a binary of FallbackRelease that links fn's module at its ResultModules version only. It reads
// f's DWARF anew: an Index reads it once for many lookups.
func ErrorRegister(f *elf.File, fn string) (int, Source, error) {
	return NewIndex(f).ErrorRegister(fn)
}

// checkModule refuses fn when it belongs to a module of ResultModules that f links at another version (or replaced).
func checkModule(f *elf.File, fn string) error {
	name := strings.ReplaceAll(fn, "%2e", ".") // symbol names escape a dot in a package path's last element
	for path, pinned := range ResultModules {
		if !strings.HasPrefix(name, path+".") && !strings.HasPrefix(name, path+"/") {
			continue
		}
		v, err := ModuleVersion(f, path)
		if err != nil {
			return fmt.Errorf("%s: %w", fn, err)
		}
		if v != pinned {
			return fmt.Errorf("no DWARF, and %s is linked at %s: the fallback result layout of %s is %s's only", path, v, fn, pinned)
		}
	}
	return nil
}

// ModuleVersion is the version of module path that f was built with, from .go.buildinfo (stripped binaries keep
// it). A module replaced by another version of itself gets that version; one replaced by another module (a fork, a
// directory) gets "=> <replacement> <version>", as go version -m shows it, which no pinned version equals: a fork
// keeps the version string it was forked at while its code, and its functions' results, may differ.
func ModuleVersion(f *elf.File, path string) (string, error) {
	ss, err := buildInfo(f, 2)
	if err != nil {
		return "", err
	}
	// The module text sits between two 16-byte sentinels, as debug/buildinfo strips them.
	mod := ss[1]
	if len(mod) >= 33 && mod[len(mod)-17] == '\n' {
		mod = mod[16 : len(mod)-16]
	}
	bi, err := debug.ParseBuildInfo(mod)
	if err != nil {
		return "", fmt.Errorf("read the module list in .go.buildinfo: %w", err)
	}
	for _, m := range bi.Deps {
		if m.Path == path {
			if r := m.Replace; r != nil {
				if r.Path != path {
					return strings.TrimSpace("=> " + r.Path + " " + r.Version), nil
				}
				return r.Version, nil
			}
			return m.Version, nil
		}
	}
	return "", fmt.Errorf("no module %s in .go.buildinfo", path)
}

// lastResultRegister adds up the integer registers the results before fn's last one take. Go assigns each scalar
// (pointer, int, bool) one register and a string, slice or interface one per word, in order; the probes only read
// functions whose results are all of the integer class, so floats are not handled.
func lastResultRegister(d *dwarf.Data, fn string) (int, error) {
	return (&Index{loaded: true, d: d}).lastResultRegister(fn)
}

// lastResultRegister is the package's lastResultRegister on the function the walk found under fn's name.
func (x *Index) lastResultRegister(fn string) (int, error) {
	x.walk()
	// Symbol names escape a dot in a package path's last element ("nats%2ego"); DWARF may spell it either way: the
	// first in the entries' order wins, as a walk from the start would find it.
	off, ok := x.funcs[fn]
	if o, ok2 := x.funcs[strings.ReplaceAll(fn, "%2e", ".")]; ok2 && (!ok || o < off) {
		off, ok = o, true
	}
	if !ok {
		if x.walkErr != nil {
			return 0, x.walkErr
		}
		return 0, fmt.Errorf("dwarf has no function %s", fn)
	}
	d := x.d
	r := &reader{Reader: d.Reader()}
	r.Seek(off)
	if _, err := r.next(); err != nil { // the function's own entry, read by the walk
		return 0, fmt.Errorf("read dwarf: %w", err)
	}
	var regs []int // registers taken by each result, in order
	seen := map[string]bool{}
	for {
		c, err := r.next()
		if err != nil {
			return 0, fmt.Errorf("read dwarf: %w", err)
		}
		if c == nil || c.Tag == 0 {
			break
		}
		if c.Tag == dwarf.TagFormalParameter {
			// Go 1.26 can list an unnamed result twice (two "~r0" entries, the second without a location):
			// result names are unique in Go, so a repeated name is the same result.
			name, _ := c.Val(dwarf.AttrName).(string)
			if out, _ := c.Val(dwarf.AttrVarParam).(bool); out && !seen[name] {
				seen[name] = true
				off, ok := c.Val(dwarf.AttrType).(dwarf.Offset)
				if !ok {
					return 0, fmt.Errorf("%s: result without a type", fn)
				}
				budget := maxTypeEntries
				n, err := registers(d.Reader(), off, 0, &budget)
				if err != nil {
					return 0, fmt.Errorf("%s: result type: %w", fn, err)
				}
				regs = append(regs, n)
			}
		}
		if c.Children {
			r.SkipChildren()
		}
	}
	if len(regs) == 0 {
		return 0, fmt.Errorf("%s has no results", fn)
	}
	n := 1
	for _, k := range regs[:len(regs)-1] {
		n += k
	}
	return n, nil
}

// Bounds on the walk of one result's type: Go's results are pointers, scalars, strings, slices, interfaces and small
// structs of them, a few entries deep; a hostile file could nest or fan out types without end.
const (
	maxTypeDepth   = 16
	maxTypeEntries = 1024
)

// registers counts the integer registers a value of the type at off takes: a struct the sum of its fields', a
// typedef its type's, anything else one per 8 bytes. It reads the entries itself, where debug/dwarf's Type would
// resolve everything the type reaches by recursion without a depth limit (a long enough chain of types exhausts the
// stack, which no recover catches).
func registers(r *dwarf.Reader, off dwarf.Offset, depth int, budget *int) (int, error) {
	if *budget--; *budget < 0 || depth > maxTypeDepth {
		return 0, fmt.Errorf("type at %#x: nested deeper than %d or wider than %d entries", off, maxTypeDepth, maxTypeEntries)
	}
	r.Seek(off)
	e, err := r.Next()
	if err != nil {
		return 0, fmt.Errorf("type at %#x: %w", off, err)
	}
	if e == nil || e.Offset != off {
		return 0, fmt.Errorf("no type entry at %#x", off)
	}
	switch e.Tag {
	case dwarf.TagTypedef:
		t, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			return 0, fmt.Errorf("typedef at %#x without a type", off)
		}
		return registers(r, t, depth+1, budget)
	case dwarf.TagStructType:
		var fields []dwarf.Offset
		for e.Children {
			c, err := r.Next()
			if err != nil {
				return 0, fmt.Errorf("struct at %#x: %w", off, err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if t, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok && c.Tag == dwarf.TagMember {
				fields = append(fields, t)
			}
			if c.Children {
				r.SkipChildren()
			}
		}
		n := 0
		for _, t := range fields {
			k, err := registers(r, t, depth+1, budget)
			if err != nil {
				return 0, err
			}
			n += k
		}
		return n, nil
	}
	if s, _ := e.Val(dwarf.AttrByteSize).(int64); s > 8 {
		return int((s + 7) / 8), nil
	}
	return 1, nil
}
