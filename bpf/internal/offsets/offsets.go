// Package offsets gives the struct field offsets the probes read (net/http.Request.Method, ...). They come from the
// target's DWARF when it has any; stripped binaries (-ldflags=-w) fall back to a table checked by this package's
// tests against the DWARF of the Go and library versions this repository pins.
package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"go/version"
	"strings"
)

// Field names a struct field as "<package path>.<Type>.<Field>", e.g. "net/http.Request.Method".
type Field string

// Fields the probes need.
const (
	RequestMethod      Field = "net/http.Request.Method"
	ResponseStatusCode Field = "net/http.Response.StatusCode"
	ServerStatus       Field = "net/http.response.status" // the server side's unexported response writer
	ServerConn         Field = "net/http.response.conn"   // its connection,
	ConnHijacked       Field = "net/http.conn.hijackedv"  // which a handler may have taken over (Hijack)
	// HTTP/2's response writer (net/http's bundled server) is one pointer to its state, which holds the status.
	H2WriterState Field = "net/http.http2responseWriter.rws"
	H2Status      Field = "net/http.http2responseWriterState.status"
	// golang.org/x/net/http2's own server's writer, the same shape. From DWARF only: no fallback offsets, since they
	// would follow x/net's version, which no table here pins.
	XH2WriterState Field = "golang.org/x/net/http2.responseWriter.rws"
	XH2Status      Field = "golang.org/x/net/http2.responseWriterState.status"

	// The runtime's goroutine creation counters (runtime/metrics' /sched/goroutines-created), read from a
	// process's memory by internal/gocount: a total in the scheduler for Ps that were destroyed, plus one per P.
	SchedLock              Field = "runtime.schedt.lock"
	SchedGoroutinesCreated Field = "runtime.schedt.goroutinesCreated"
	PGoroutinesCreated     Field = "runtime.p.goroutinesCreated"
)

// Fallback holds the offsets for Go 1.26 on amd64, as of the release go.work's toolchain line pins. Request and
// Response have kept theirs since Go 1.0 (Method and Status/StatusCode are their first fields); the unexported
// response.status moves with net/http's internals and is the one this table exists for. The runtime's scheduler
// fields move with nearly every Go release: a new toolchain needs this table checked (TestFallbackMatchesDWARF fails
// until it is). Earlier 1.26 releases that had a field elsewhere are in Moved.
var Fallback = map[Field]uint64{
	RequestMethod:      0,
	ResponseStatusCode: 16,
	ServerStatus:       128,
	ServerConn:         0,   // the first field since Go 1.0
	ConnHijacked:       136, // the same in go1.26.9-go1.26.11 (net/http's conn did not change)
	H2WriterState:      0,   // its only field
	H2Status:           72,  // the same in go1.26.9-go1.26.11 (h2_bundle.go's responseWriterState did not change)

	SchedLock:              32,
	SchedGoroutinesCreated: 6864,
	PGoroutinesCreated:     13792,
}

// Moved lists fields that an earlier 1.26 release kept at another offset: a stripped binary built before Release
// has Field at Offset. The agent probes whatever the machine runs, not only binaries of this repository's toolchain.
var Moved = []struct {
	Release string // the first release with Fallback's offset
	Field   Field
	Offset  uint64
}{
	{"go1.26.11", ServerStatus, 120}, // net/http's response grew a field in the 1.26.11 security release
}

// Source says where an offset came from.
type Source string

// Where offsets come from.
const (
	FromDWARF    Source = "dwarf"
	FromFallback Source = "fallback"
)

// FallbackRelease is the Go minor release whose offsets Fallback and ErrorResult hold.
const FallbackRelease = "go1.26"

// Resolve returns the offsets of fields in the executable f: from DWARF when present, else from Fallback as it was
// in the Go release that built f (Moved). A binary without DWARF of another Go minor release, or of none that
// .go.buildinfo names, is refused: the runtime's fields move with nearly every release, and a wrong offset would be
// read as a count, not noticed. It reads f's DWARF anew: an Index reads it once for many lookups.
func Resolve(f *elf.File, fields ...Field) (map[Field]uint64, Source, error) {
	return NewIndex(f).Resolve(fields...)
}

// fallbackGoVersion is the Go release that built f, when the fallback tables hold its offsets.
func fallbackGoVersion(f *elf.File) (string, error) {
	v, err := GoVersion(f)
	if err != nil {
		return "", fmt.Errorf("no DWARF, and the Go release is unknown (%w): the fallback offsets are %s's only", err, FallbackRelease)
	}
	// A toolchain built with experiments says "go1.26.11 X:name"; go/version reads the release before the space.
	if release, _, _ := strings.Cut(v, " "); version.Lang(release) != FallbackRelease {
		return "", fmt.Errorf("no DWARF, and built by %s: the fallback offsets are %s's only (build it without -ldflags=-w)", v, FallbackRelease)
	}
	return v, nil
}

// fallback is fl's offset in a binary of goVersion.
func fallback(goVersion string, fl Field) (uint64, bool) {
	off, ok := Fallback[fl]
	for _, m := range Moved {
		if m.Field == fl && version.Compare(goVersion, m.Release) < 0 {
			off = m.Offset
		}
	}
	return off, ok
}

// GoVersion returns the Go release that built f ("go1.26.11"), which the linker writes into .go.buildinfo, stripped
// binaries included. debug/buildinfo reads the same, but from the file again, where Resolve has only the *elf.File.
func GoVersion(f *elf.File) (string, error) {
	ss, err := buildInfo(f, 1)
	if err != nil {
		return "", err
	}
	return ss[0], nil
}

// buildInfo reads the first n strings of f's .go.buildinfo (see buildInfoStrings).
func buildInfo(f *elf.File, n int) ([]string, error) {
	s := f.Section(".go.buildinfo")
	if s == nil {
		return nil, errors.New("no .go.buildinfo section: not a Go binary")
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, errors.New(".go.buildinfo is compressed: the linker never compresses it")
	}
	data, err := s.Data() // no more than the file holds: debug/elf reads it in chunks
	if err != nil {
		return nil, fmt.Errorf("read .go.buildinfo: %w", err)
	}
	return buildInfoStrings(data, n)
}

// buildInfoStrings reads the first n strings of .go.buildinfo's bytes: a 32-byte header (magic, pointer size,
// flags), then, since Go 1.18 (flag 2), the Go release and the module information (go version -m's text) as
// varint-length-prefixed strings.
func buildInfoStrings(data []byte, n int) ([]string, error) {
	const magic, header, inline = "\xff Go buildinf:", 32, 2
	if len(data) < header || string(data[:len(magic)]) != magic || data[len(magic)+1]&inline == 0 {
		return nil, errors.New(".go.buildinfo is not in the Go 1.18+ format")
	}
	rest := data[header:]
	var out []string
	for range n {
		l, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < l {
			return nil, fmt.Errorf(".go.buildinfo: bad length of string %d", len(out)+1)
		}
		out = append(out, string(rest[w:w+int(l)]))
		rest = rest[w+int(l):]
	}
	return out, nil
}

// maxInflate bounds how much larger than its bytes in the file a compressed debug section may say it is. The Go
// linker's zlib sections inflate 1.7-3.9 times; zlib itself allows about 1000, so without a bound a file of a few
// megabytes could make the agent allocate gigabytes.
const maxInflate = 16

// CheckSections refuses compressed DWARF sections of f, a file of fileSize bytes, that claim more than maxInflate
// times their bytes in the file, or more bytes than the file has (debug/elf allocates what the header claims, up to
// what decompression yields). Uncompressed ones cost what the file holds. Resolve and ErrorRegister, which are not
// given the file's size, check the ratio themselves; the agent calls this once per file first, so a hostile file
// is skipped whole with one error.
func CheckSections(f *elf.File, fileSize int64) error {
	for _, s := range f.Sections {
		size := s.Size
		switch {
		case s.Flags&elf.SHF_COMPRESSED != 0:
		case strings.HasPrefix(s.Name, ".zdebug"):
			// The old GNU format: "ZLIB" and the inflated size (big-endian) start the section (debug/elf reads it so).
			var hdr [12]byte
			if n, _ := s.ReadAt(hdr[:], 0); n != len(hdr) || string(hdr[:4]) != "ZLIB" {
				continue
			}
			size = binary.BigEndian.Uint64(hdr[4:])
		default:
			continue
		}
		// The ratio alone would pass any inflated size behind a size in the file that the file does not have, and
		// zlib inflates up to ~1000 times what is really there.
		if s.Offset > uint64(fileSize) || s.FileSize > uint64(fileSize)-s.Offset {
			return fmt.Errorf("compressed section %s claims %d bytes at offset %d of a %d-byte file", s.Name, s.FileSize, s.Offset, fileSize)
		}
		if size/maxInflate > s.FileSize {
			return fmt.Errorf("compressed section %s claims %d bytes from %d in the file", s.Name, size, s.FileSize)
		}
	}
	return nil
}

// maxNulls bounds the null entries read in a row: each ends one list of children, so a run longer than any nesting
// means the reader is not advancing.
const maxNulls = 1024

// reader is a dwarf.Reader whose next fails when it stops advancing. For a LEB128 number left unterminated at the
// end of the data, debug/dwarf returns a null entry without consuming anything, and so on forever (found by
// FuzzDWARF: FromDWARFData never returned).
type reader struct {
	*dwarf.Reader
	nulls int
}

func (r *reader) next() (*dwarf.Entry, error) {
	e, err := r.Next()
	if e == nil || e.Tag != 0 {
		r.nulls = 0
		return e, err
	}
	if r.nulls++; r.nulls > maxNulls {
		return nil, fmt.Errorf("more than %d null entries in a row: the entries do not advance", maxNulls)
	}
	return e, err
}

// FromDWARFData reads the offsets from DWARF type information, in one pass over the entries.
func FromDWARFData(d *dwarf.Data, fields ...Field) (map[Field]uint64, error) {
	return (&Index{loaded: true, d: d}).fromDWARF(fields...)
}
