//go:build unix

package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"
)

// A request the client cannot even open a socket for (this process is out of
// file descriptors: a target that hangs holds one per request in flight, and
// -max-inflight's default is at the usual limit) is the client's failure, not
// the target's: it was classed "connect" (refused, unreachable), which sends
// the operator to the wrong machine. The test takes every descriptor this
// process may open, so the next socket fails as it does then.
func TestOutOfFileDescriptorsIsTheClientsError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cli := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer cli.CloseIdleConnections()

	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Skip("no RLIMIT_NOFILE here:", err)
	}
	low := was
	low.Cur = 256
	if was.Cur < low.Cur {
		low.Cur = was.Cur
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	// Every descriptor left is taken, so the next socket has none.
	var fill []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}
	_, err := cli.Get(srv.URL)
	for _, f := range fill {
		f.Close()
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, syscall.EMFILE) {
		t.Skipf("a GET with no descriptor to spare: %v, not EMFILE", err)
	}
	if got := classify(0, err); got != classOutOfFDs {
		t.Fatalf("classify(%v) = %q, want the client's own class", err, got)
	}
}
