package offsets

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFallbackMatchesDWARF builds the test target with the toolchain at hand (go.work's under make test) and the
// pinned libraries and checks that every fallback offset for that release equals what its DWARF says, so stripped
// binaries are read correctly.
func TestFallbackMatchesDWARF(t *testing.T) {
	out := filepath.Join(t.TempDir(), "target")
	if b, err := exec.Command("go", "build", "-o", out, "../../testdata/target").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fields []Field
	for fl := range Fallback {
		fields = append(fields, fl)
	}
	got, src, err := Resolve(f, fields...)
	if err != nil || src != FromDWARF {
		t.Fatalf("Resolve: %v (source %s)", err, src)
	}
	goVersion, err := GoVersion(f)
	if err != nil {
		t.Fatal(err)
	}
	for fl := range Fallback {
		if want, _ := fallback(goVersion, fl); got[fl] != want {
			t.Errorf("%s: DWARF %d, fallback for %s %d", fl, got[fl], goVersion, want)
		}
	}
}

// TestMovedMatchesDWARF builds the test target, with and without DWARF, on the release just before each Moved entry
// (fetched from the Go module proxy like any toolchain) and checks that the stripped copy resolves to what the other
// copy's DWARF says: the version read from .go.buildinfo picks the older offset.
func TestMovedMatchesDWARF(t *testing.T) {
	for _, m := range Moved {
		parts := strings.Split(m.Release, ".") // go1, 26, 11
		patch, err := strconv.Atoi(parts[len(parts)-1])
		if len(parts) != 3 || err != nil || patch == 0 {
			t.Fatalf("Moved release %q: want goX.Y.Z with Z > 0", m.Release)
		}
		prev := fmt.Sprintf("%s.%s.%d", parts[0], parts[1], patch-1)
		dir := t.TempDir()
		for _, b := range []struct{ name, flags string }{{"dwarf", ""}, {"stripped", "-s -w"}} {
			cmd := exec.Command("go", "build", "-ldflags="+b.flags, "-o", filepath.Join(dir, b.name), "../../testdata/target")
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+prev)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build with %s: %v\n%s", prev, err, out)
			}
		}
		want := resolveFile(t, filepath.Join(dir, "dwarf"), FromDWARF, m.Field)
		got := resolveFile(t, filepath.Join(dir, "stripped"), FromFallback, m.Field)
		if got != want || got != m.Offset {
			t.Errorf("%s built with %s: stripped copy resolves %d, DWARF says %d, Moved says %d", m.Field, prev, got, want, m.Offset)
		}
	}
}

// resolveFile resolves one field of the executable at path, wanting it from src.
func resolveFile(t *testing.T, path string, src Source, fl Field) uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, from, err := Resolve(f, fl)
	if err != nil || from != src {
		t.Fatalf("Resolve %s: %v (from %s, want %s)", path, err, from, src)
	}
	return got[fl]
}

func TestStrippedUsesFallback(t *testing.T) {
	out := filepath.Join(t.TempDir(), "target")
	if b, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, "../../testdata/target").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	goVersion := strings.TrimSpace(string(env))
	if v, err := GoVersion(f); err != nil || v != goVersion {
		t.Errorf("GoVersion = %q, %v; go env GOVERSION says %s", v, err, goVersion)
	}
	status, _ := fallback(goVersion, ServerStatus)
	got, src, err := Resolve(f, RequestMethod, ServerStatus)
	if err != nil || src != FromFallback || got[RequestMethod] != Fallback[RequestMethod] || got[ServerStatus] != status {
		t.Fatalf("Resolve = %v, %s, %v; want the fallback for %s", got, src, err, goVersion)
	}
	if _, _, err := Resolve(f, "net/http.Request.NoSuchField"); err == nil {
		t.Fatal("unknown field without DWARF resolved")
	}
}

// TestErrorResultsMatchDWARF checks the fallback result layouts against the DWARF of testdata/clients, which links
// every library the call probes read at the versions go.mod pins.
func TestErrorResultsMatchDWARF(t *testing.T) {
	f := clients(t)
	for path, pinned := range ResultModules {
		if v, err := ModuleVersion(f, path); err != nil || v != pinned {
			t.Errorf("testdata/clients links %s %s (%v); ResultModules pins %s: check ErrorResult and update the pin", path, v, err, pinned)
		}
	}
	x := NewIndex(f) // one parse of the DWARF for every function: ErrorRegister, the same lookup, parses it each time
	for fn, want := range ErrorResult {
		got, src, err := x.ErrorRegister(fn)
		if err != nil || src != FromDWARF {
			t.Errorf("%s: %v (source %s)", fn, err, src)
			continue
		}
		if got != want {
			t.Errorf("%s: DWARF puts the error in register %d, the fallback table says %d", fn, got, want)
		}
	}
}
