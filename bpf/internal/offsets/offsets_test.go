package offsets

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFallbackMatchesDWARF builds the test target with the pinned toolchain and libraries and checks that every
// fallback offset equals what its DWARF says, so stripped binaries are read correctly.
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
	for fl, want := range Fallback {
		if got[fl] != want {
			t.Errorf("%s: DWARF %d, fallback %d", fl, got[fl], want)
		}
	}
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
	got, src, err := Resolve(f, RequestMethod)
	if err != nil || src != FromFallback || got[RequestMethod] != Fallback[RequestMethod] {
		t.Fatalf("Resolve = %v, %s, %v", got, src, err)
	}
	if _, _, err := Resolve(f, "net/http.Request.NoSuchField"); err == nil {
		t.Fatal("unknown field without DWARF resolved")
	}
}

// TestErrorResultsMatchDWARF checks the fallback result layouts against the DWARF of testdata/clients, which links
// every library the call probes read at the versions go.mod pins.
func TestErrorResultsMatchDWARF(t *testing.T) {
	out := filepath.Join(t.TempDir(), "clients")
	if b, err := exec.Command("go", "build", "-o", out, "../../testdata/clients").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for fn, want := range ErrorResult {
		got, src, err := ErrorRegister(f, fn)
		if err != nil || src != FromDWARF {
			t.Errorf("%s: %v (source %s)", fn, err, src)
			continue
		}
		if got != want {
			t.Errorf("%s: DWARF puts the error in register %d, the fallback table says %d", fn, got, want)
		}
	}
}
