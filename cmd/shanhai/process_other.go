//go:build unix && !linux

package main

import "syscall"

// childAttr puts a child part in its own process group, as on Linux (see
// process_linux.go), so Ctrl-C stops the children in order. Pdeathsig is
// Linux-only: here a child outlives this program when it is killed or
// ended by a second Ctrl-C, and keeps its port until stopped by hand.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
