package limit

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU adds a cpu-ns/op metric: process CPU time (user+system) per
// operation. On a shared, oversubscribed machine wall-clock ns/op mostly
// measures the run queue; CPU time per op is what the code itself costs.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
