package testenv

import (
	"fmt"
	"runtime"
	"testing"
)

// Failure runs fn as the body of a test and returns the message it failed with, or "" when it returned normally. It
// is for the tests of test helpers (testenv and its subpackages): a helper's failure is its behaviour, and it must be
// observed without failing the test that watches it. fn runs on its own goroutine, as a test body does, so Fatal and
// FailNow end it with runtime.Goexit; anything else fn calls on tb goes to t.
func Failure(t testing.TB, fn func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r.msg
}

// recorder is a testing.TB whose fatal calls record a message and end the goroutine instead of failing the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }

func (r *recorder) Fatal(args ...any) { r.fail(fmt.Sprint(args...)) }

func (r *recorder) FailNow() { r.fail("FailNow") }

func (r *recorder) fail(msg string) {
	r.msg = msg
	runtime.Goexit()
}
