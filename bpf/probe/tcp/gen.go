// Package tcp is the TCP lifecycle probe (opens, closes, failed connects, retransmits per process; see tcp.c).
package tcp

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type tcp_stats Bpf tcp.c -- -I../../include
