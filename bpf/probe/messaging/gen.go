// Package messaging is a call-latency probe: publish latency: kafka-go (*Writer).WriteMessages (and NATS / Pulsar publish), timed entry to every RET, errors counted.
package messaging

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type call_key Bpf messaging.c -- -I../../include
