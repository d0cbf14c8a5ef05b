package harness

import (
	"flag"
	"runtime"
	"strconv"
	"testing"
)

func TestWaitingTestsInParallelRaisesOnlyTheDefault(t *testing.T) {
	f := flag.Lookup("test.parallel")
	before := f.Value.String()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	t.Cleanup(func() { _ = flag.Set("test.parallel", before) })

	WaitingTestsInParallel(1) // never lowers
	if got := f.Value.String(); got != before {
		t.Fatalf("-test.parallel = %s after asking for 1, want %s kept", got, before)
	}
	n := runtime.GOMAXPROCS(0) + 6
	WaitingTestsInParallel(n)
	want := strconv.Itoa(n)
	if given {
		want = before // the command line wins
	}
	if got := f.Value.String(); got != want {
		t.Fatalf("-test.parallel = %s after asking for %d (given on the command line: %v), want %s", got, n, given, want)
	}
}
