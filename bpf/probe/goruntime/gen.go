// Package goruntime is the Go runtime probe (stop-the-world pauses, goroutine creations; see goruntime.c).
package goruntime

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type goroutine_slot -type stw_hist_slot Bpf goruntime.c -- -I../../include
