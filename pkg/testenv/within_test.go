package testenv_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func TestWithinReturnsTheCallsError(t *testing.T) {
	want := errors.New("no answer")
	if err := testenv.Within(t, time.Minute, "a call that fails", func() error { return want }); err != want {
		t.Fatalf("Within = %v, want the call's own error %v", err, want)
	}
}

// A call that does not return fails the test, saying what was called and for how long it was waited for, rather
// than holding the test until go test's own timeout with nothing said about it.
func TestWithinFailsOnACallThatDoesNotReturn(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck) // lets the call's goroutine end
	msg := testenv.Failure(t, func(tb testing.TB) {
		_ = testenv.Within(tb, 50*time.Millisecond, "Open with etcd silent", func() error {
			<-stuck
			return nil
		})
	})
	if !strings.Contains(msg, "Open with etcd silent") || !strings.Contains(msg, "50ms") {
		t.Fatalf("Within failed with %q, want it to name the call and the 50ms it waited", msg)
	}
}
