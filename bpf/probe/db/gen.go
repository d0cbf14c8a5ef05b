// Package db is a call-latency probe: database/sql.(*DB).queryDC and execDC and go-redis v9 (*baseClient)._process,
// processPipeline and processTxPipeline, timed from entry to exit, errors counted.
package db

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type call_key Bpf db.c -- -I../../include
