// Package httpclient is a call-latency probe: HTTP client calls: net/http.(*Transport).roundTrip, timed entry to every RET, with the request method and response status (or error).
package httpclient

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type call_key -type call_slot -type call_agg_slot Bpf httpclient.c -- -I../../include
