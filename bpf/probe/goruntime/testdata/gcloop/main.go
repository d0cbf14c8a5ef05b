// Command gcloop forces N garbage collections (the first argument), two stop-the-world pauses each, then prints the
// number of pauses the runtime itself recorded, so a test can check the runtime probe's count against it and price
// the pause programs.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: gcloop N")
		os.Exit(2)
	}
	for range n {
		runtime.GC()
	}
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}, {Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	var pauses uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindFloat64Histogram {
			for _, c := range x.Value.Float64Histogram().Counts {
				pauses += c
			}
		}
	}
	fmt.Println(pauses)
}
