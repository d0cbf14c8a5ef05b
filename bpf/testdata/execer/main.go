// Command execer forces GCs, then execs the next executable on its command line in the same process (the pid stays),
// handing it the stop-the-world pauses its runtime recorded in EXECER_PAUSES; the last one prints the total of all of
// them and waits to be killed. Usage: execer <gcs> [next-exe <gcs> ...]
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	for range n {
		runtime.GC()
	}
	total := pauses()
	if prev := os.Getenv("EXECER_PAUSES"); prev != "" {
		p, err := strconv.ParseUint(prev, 10, 64)
		if err != nil {
			panic(err)
		}
		total += p
	}
	if len(os.Args) > 2 {
		env := append(os.Environ(), "EXECER_PAUSES="+strconv.FormatUint(total, 10))
		if err := syscall.Exec(os.Args[2], os.Args[2:], env); err != nil {
			panic(err)
		}
	}
	fmt.Println(total)
	time.Sleep(time.Hour)
}

// pauses is the number of stop-the-world pauses this runtime recorded (GC and other), as in testdata/target.
func pauses() uint64 {
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}, {Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindFloat64Histogram {
			for _, c := range x.Value.Float64Histogram().Counts {
				n += c
			}
		}
	}
	return n
}
