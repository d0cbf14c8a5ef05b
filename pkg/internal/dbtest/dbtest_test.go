package dbtest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fatalRecorder is a testing.TB whose Fatalf keeps the message and ends the
// goroutine, as the real one does, without failing the test that uses it.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A database that does not open fails the test naming its URL without the
// password: CI logs keep every failure's message.
func TestOpenFailureShowsNoPassword(t *testing.T) {
	const secret = "s3cretpw"
	for _, url := range []string{
		"postgres://bob:" + secret + "@127.0.0.1:1/shanhai?sslmode=disable&connect_timeout=5", // nothing listens
		"postgres://bob:12/" + secret + "@127.0.0.1/shanhai",                                  // an unencoded '/': refused
	} {
		r := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			open(r, url)
		}()
		<-done
		if r.msg == "" {
			t.Fatalf("open %q did not fail", url)
		}
		if strings.Contains(r.msg, secret) {
			t.Errorf("open's failure shows the password: %s", r.msg)
		}
	}
}
