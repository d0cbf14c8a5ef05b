package offsets

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// A module replaced by another (a fork, go.mod's replace directive) at the pinned version string is not the pinned
// module: its functions may return other results, so a stripped binary linking it must be refused as well. The
// version check read the replacement's version alone and gave such a fork the fallback layout (found by review).
// The binary is the pinned build with go-redis's line in .go.buildinfo rewritten into a replacement of the same
// length (the checksum shortened to make room; nothing reads it).
func TestReplacedModuleRefused(t *testing.T) {
	orig, _ := buildStripped(t, "clients")
	const fn, module = "github.com/redis/go-redis/v9.(*baseClient)._process", "github.com/redis/go-redis/v9"
	line := regexp.MustCompile(regexp.QuoteMeta(module+"\t"+ResultModules[module]+"\t") + "h1:[A-Za-z0-9+/=]+\n").Find(orig)
	if line == nil {
		t.Fatalf("no line of %s %s in .go.buildinfo", module, ResultModules[module])
	}
	for _, c := range []struct {
		to      string
		refused bool
	}{
		{"example.com/fork/redis/v9", true},
		{module, false}, // replaced by itself at the same version: the pinned module
	} {
		repl := module + "\t" + ResultModules[module] + "\n=>\t" + c.to + "\t" + ResultModules[module] + "\th1:"
		if len(repl) >= len(line) {
			t.Fatalf("replacement %q does not fit in %q", repl, line)
		}
		repl += strings.Repeat("A", len(line)-len(repl)-1) + "\n"
		f := rewritten(t, orig, string(line), repl)
		_, _, err := ErrorRegister(f, fn)
		if refused := err != nil; refused != c.refused || refused && !strings.Contains(err.Error(), c.to) {
			t.Errorf("stripped binary linking %s replaced by %s: ErrorRegister error %v, want refused=%v naming it", module, c.to, err, c.refused)
		}
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
