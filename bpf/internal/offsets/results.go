package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"strings"
)

// ErrorResult holds, for every function whose error a probe reads at its RETs, the register (1-based, in ABI order
// RAX, RBX, RCX, RDI, ...) holding the itab word of its last result, the error. It is the fallback for binaries
// without DWARF and is checked against DWARF by the tests for the versions go.mod pins (go-redis v9.23.0's _process,
// for one, returns four values).
var ErrorResult = map[string]int{
	"net/http.(*Transport).roundTrip":                            2, // (*Response, error)
	"database/sql.(*DB).queryDC":                                 2, // (*Rows, error)
	"database/sql.(*DB).execDC":                                  3, // (Result, error)
	"github.com/redis/go-redis/v9.(*baseClient)._process":        4, // (retry, forced bool, cn *pool.Conn, err error)
	"github.com/segmentio/kafka-go.(*Writer).WriteMessages":      1, // error
	"github.com/nats-io/nats%2ego.(*Conn).publish":               1, // error
	"github.com/apache/pulsar-client-go/pulsar.(*producer).Send": 3, // (MessageID, error)
}

// ErrorRegister says which register holds fn's error result at its RETs: from DWARF when f has it, else from
// ErrorResult.
func ErrorRegister(f *elf.File, fn string) (int, Source, error) {
	d, err := f.DWARF()
	if err != nil {
		r, ok := ErrorResult[fn]
		if !ok {
			return 0, FromFallback, fmt.Errorf("no DWARF and no fallback result layout for %s", fn)
		}
		return r, FromFallback, nil
	}
	r, err := lastResultRegister(d, fn)
	return r, FromDWARF, err
}

// lastResultRegister adds up the integer registers the results before fn's last one take. Go assigns each scalar
// (pointer, int, bool) one register and a string, slice or interface one per word, in order; the probes only read
// functions whose results are all of the integer class, so floats are not handled.
func lastResultRegister(d *dwarf.Data, fn string) (int, error) {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("read dwarf: %w", err)
		}
		if e == nil {
			return 0, fmt.Errorf("dwarf has no function %s", fn)
		}
		if e.Tag != dwarf.TagSubprogram {
			if e.Children && e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		// Symbol names escape a dot in a package path's last element ("nats%2ego"); DWARF may spell it either way.
		if name, _ := e.Val(dwarf.AttrName).(string); (name != fn && name != strings.ReplaceAll(fn, "%2e", ".")) || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		var regs []int // registers taken by each result, in order
		seen := map[string]bool{}
		for {
			c, err := r.Next()
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
					t, err := d.Type(off)
					if err != nil {
						return 0, fmt.Errorf("%s: result type: %w", fn, err)
					}
					regs = append(regs, registers(t))
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
}

func registers(t dwarf.Type) int {
	switch t := t.(type) {
	case *dwarf.TypedefType:
		return registers(t.Type)
	case *dwarf.StructType:
		n := 0
		for _, f := range t.Field {
			n += registers(f.Type)
		}
		return n
	}
	if s := t.Size(); s > 8 {
		return int((s + 7) / 8)
	}
	return 1
}
