module github.com/shanhai-dev/shanhai/bpf

go 1.26.0

require github.com/shanhai-dev/shanhai/pkg v0.0.0-00010101000000-000000000000

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	golang.org/x/arch v0.23.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/shanhai-dev/shanhai/pkg => ../pkg

tool github.com/cilium/ebpf/cmd/bpf2go
