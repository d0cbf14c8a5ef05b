// Command loop calls one tiny function N times (the first argument) and prints the mean time per call in ns, so a
// benchmark can price a uprobe hit: run it bare, then with a probe on the function.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

//go:noinline
func tiny(x int) int { return x + 1 }

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: loop N")
		os.Exit(2)
	}
	s := 0
	start := time.Now()
	for range n {
		s = tiny(s)
	}
	fmt.Println(float64(time.Since(start).Nanoseconds())/float64(n), s)
}
