package offsets

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A stripped binary of a Go release other than go1.26 got the go1.26 offsets, unchecked (found by review): the
// runtime's scheduler fields move with nearly every release, so its counts would be read from the wrong place. It
// must be refused, naming the release. The binary is the pinned build with its release rewritten in .go.buildinfo.
func TestOtherGoVersionRefused(t *testing.T) {
	orig, goVersion := buildStripped(t, "target")
	for _, minor := range []string{"go1.25", "go1.27"} {
		v := minor + strings.TrimPrefix(goVersion, FallbackRelease) // the same length: .go.buildinfo keeps its layout
		f := rewritten(t, orig, goVersion, v)
		if _, _, err := Resolve(f, ServerStatus, SchedGoroutinesCreated, PGoroutinesCreated); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("stripped binary of %s: Resolve error %v, want a refusal naming %s", v, err, v)
		}
		if _, _, err := ErrorRegister(f, "net/http.(*Transport).roundTrip"); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("stripped binary of %s: ErrorRegister error %v, want a refusal naming %s", v, err, v)
		}
	}
}

// The fallback result layouts of library functions hold for the pinned module versions only (go-redis's _process
// has changed its results before); a stripped binary linking another version must be refused, naming it.
func TestOtherModuleVersionRefused(t *testing.T) {
	orig, _ := buildStripped(t, "clients")
	const fn, module = "github.com/redis/go-redis/v9.(*baseClient)._process", "github.com/redis/go-redis/v9"
	pinned := ResultModules[module]
	if _, src, err := ErrorRegister(rewritten(t, orig, "", ""), fn); err != nil || src != FromFallback {
		t.Fatalf("stripped binary of the pinned versions: ErrorRegister %v (from %s), want the fallback", err, src)
	}
	other := "v9.99.0"[:len(pinned)] // the same length: the rewrite must keep .go.buildinfo's layout
	f := rewritten(t, orig, module+"\t"+pinned, module+"\t"+other)
	if _, _, err := ErrorRegister(f, fn); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("stripped binary linking %s %s: ErrorRegister error %v, want a refusal naming %s", module, other, err, other)
	}
}

// buildStripped builds testdata/<name> with -ldflags=-s -w and returns its bytes and Go release.
func buildStripped(t *testing.T, name string) ([]byte, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, "../../testdata/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := GoVersion(f)
	if err != nil {
		t.Fatal(err)
	}
	return data, v
}

// rewritten opens a copy of the executable data with every old replaced by new (same length).
func rewritten(t *testing.T, data []byte, old, new string) *elf.File {
	t.Helper()
	if len(old) != len(new) {
		t.Fatalf("%q -> %q: not the same length", old, new)
	}
	if old != "" && !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%q is not in the binary", old)
	}
	f, err := elf.NewFile(bytes.NewReader(bytes.ReplaceAll(data, []byte(old), []byte(new))))
	if err != nil {
		t.Fatal(err)
	}
	return f
}
