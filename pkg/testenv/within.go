package testenv

import (
	"testing"
	"time"
)

// Within runs call and returns its error, failing t with what was called once d has passed without call returning.
// It is the hang guard of a test that a call gives up by itself (a start's bound on an etcd that does not answer,
// say): d is a bound far past the one under test, never a timing goal. call runs on a goroutine of its own, which a
// failure leaves behind, still running; what the caller reads of its results after Within returns is safe to read.
func Within(t testing.TB, d time.Duration, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still running %v after it was called", what, d)
		return nil // not reached: Fatalf ends the test
	}
}
