// Package bpf is eBPF probes (cilium/ebpf + bpf2go) and the agent that observes the platform's Go processes with zero code changes.
package bpf
