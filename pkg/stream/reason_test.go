package stream

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClipReason(t *testing.T) {
	if ClipReason(nil) != nil {
		t.Fatal("ClipReason(nil) is not nil")
	}
	short := errors.New(strings.Repeat("a", MaxReason))
	if got := ClipReason(short); got.Error() != short.Error() || !errors.Is(got, short) {
		t.Fatalf("a reason of MaxReason bytes changed: %q", got)
	}

	long := strings.Repeat("a", MaxReason+1)
	if got, want := ClipReason(errors.New(long)).Error(), long[:MaxReason]+"... (1025 bytes in all)"; got != want {
		t.Fatalf("%d bytes: %q, want %q", len(long), got, want)
	}

	// A two-byte rune across the cut is left out whole, never split: the
	// reason stays valid UTF-8, which the server's advisory (JSON) and a
	// PostgreSQL text column need.
	straddle := strings.Repeat("a", MaxReason-1) + "é" + strings.Repeat("b", 10)
	got := ClipReason(errors.New(straddle)).Error()
	if want := strings.Repeat("a", MaxReason-1) + "... (1035 bytes in all)"; got != want || !utf8.ValidString(got) {
		t.Fatalf("rune across the cut: %q, want %q", got, want)
	}

	// Still the cause to errors.Is and errors.As.
	cause := &fs.PathError{Op: "open", Path: strings.Repeat("x", 2*MaxReason), Err: fs.ErrNotExist}
	c := ClipReason(cause)
	var pe *fs.PathError
	if !errors.Is(c, fs.ErrNotExist) || !errors.As(c, &pe) || pe != cause || len(c.Error()) > MaxReason+64 {
		t.Fatalf("clipped cause: Is %v, As %v, %d bytes", errors.Is(c, fs.ErrNotExist), errors.As(c, &pe), len(c.Error()))
	}
}
