package harness

import (
	"flag"
	"runtime"
	"strconv"
)

// WaitingTestsInParallel lets up to n of a package's parallel tests run at
// once, unless -test.parallel was given. Call it from TestMain before m.Run.
//
// go test's default, GOMAXPROCS, suits tests that compute. The bridge's tests
// against the real servers mostly wait (a 40 s outage held on purpose, idle
// reads that must stay empty, redeliveries after an ack wait), so on a 2-core
// CI machine the default ran them two at a time with the CPU mostly idle. n
// bounds what they ask of the shared brokers at once.
func WaitingTestsInParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given || n <= runtime.GOMAXPROCS(0) {
		return
	}
	// Only unknown flags fail Set; test.parallel is registered by testing.Init, which
	// m.Run's callers (TestMain) always have behind them.
	_ = flag.Set("test.parallel", strconv.Itoa(n))
}
