// Command loop calls one tiny function N times (the first argument; with "framed" as the second, a function with a
// frame) and prints the mean time per call in ns, so a
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

// framed has the usual Go prologue (stack check, push rbp) because it calls another function.
//
//go:noinline
func framed(x int) int { return tiny(x) + 1 }

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: loop N")
		os.Exit(2)
	}
	f := tiny
	if len(os.Args) > 2 && os.Args[2] == "framed" {
		f = framed
	}
	s := 0
	start := time.Now()
	for range n {
		s = f(s)
	}
	fmt.Println(float64(time.Since(start).Nanoseconds())/float64(n), s)
}
