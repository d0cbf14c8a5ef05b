package offsets

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestIndexReadsDWARFOnce asks one Index of testdata/clients everything the agent asks while attaching to it (the
// HTTP server's fields with HTTP/2's and golang.org/x/net/http2's, which a program with no server does not have, the
// call probes' fields and every probed function's error register, the runtime's counters): the answers are the
// tables' (which TestFallbackMatchesDWARF and TestErrorResultsMatchDWARF check against the DWARF), and the DWARF was
// parsed and walked once. Before the Index
// each of these parsed the DWARF again and walked it from the start, which was most of an attach.
func TestIndexReadsDWARFOnce(t *testing.T) {
	f := clients(t)
	goVersion, err := GoVersion(f)
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(f)
	for _, fields := range [][]Field{
		{RequestMethod, ResponseStatusCode},
		{SchedLock, SchedGoroutinesCreated, PGoroutinesCreated},
	} {
		got, src, err := x.Resolve(fields...)
		if err != nil || src != FromDWARF {
			t.Fatalf("%v: %v (source %s)", fields, err, src)
		}
		for _, fl := range fields {
			if want, _ := fallback(goVersion, fl); got[fl] != want {
				t.Errorf("%s: Index gives %d, the table %d", fl, got[fl], want)
			}
		}
	}
	for _, fields := range [][]Field{
		{RequestMethod, ServerStatus, ServerConn, ConnHijacked, H2WriterState, H2Status},
		{XH2WriterState, XH2Status},
	} {
		if _, _, err := x.Resolve(fields...); err == nil || !strings.Contains(err.Error(), "dwarf has no") {
			t.Errorf("%v in a program that serves no HTTP: %v, want not found", fields, err)
		}
	}
	for fn, want := range ErrorResult {
		if got, src, err := x.ErrorRegister(fn); got != want || src != FromDWARF || err != nil {
			t.Errorf("%s: Index gives register %d (%s, %v), the table %d", fn, got, src, err, want)
		}
	}
	if x.parses != 1 || x.walks != 1 {
		t.Errorf("the Index parsed the DWARF %d times and walked it %d times, want once each", x.parses, x.walks)
	}
}

// clients is testdata/clients with DWARF, built once for the package's tests: the build links four client
// libraries, which under a loaded machine costs tens of seconds each time.
func clients(t *testing.T) *elf.File {
	t.Helper()
	clientsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "offsets-test")
		if err != nil {
			clientsErr = err
			return
		}
		clientsPath = filepath.Join(dir, "clients")
		if b, err := exec.Command("go", "build", "-o", clientsPath, "../../testdata/clients").CombinedOutput(); err != nil {
			clientsErr = fmt.Errorf("go build: %v\n%s", err, b)
		}
	})
	if clientsErr != nil {
		t.Fatal(clientsErr)
	}
	f, err := elf.Open(clientsPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

var (
	clientsOnce sync.Once
	clientsPath string
	clientsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if clientsPath != "" {
		os.RemoveAll(filepath.Dir(clientsPath))
	}
	os.Exit(code)
}
