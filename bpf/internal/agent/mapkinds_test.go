package agent

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/probe/db"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpclient"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpsock"
	"github.com/shanhai-dev/shanhai/bpf/probe/messaging"
	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// bpfFNoPrealloc is BPF_F_NO_PREALLOC (include/uapi/linux/bpf.h).
const bpfFNoPrealloc = 1

// TestNoPerCPUHashWithoutPrealloc reads every probe's objects: no map may be a per-CPU hash that is not
// preallocated. Such a map takes a new element's per-CPU value from the kernel's per-CPU allocator without waiting,
// which under load has nothing ready, and the event that was to create the element is lost (the HTTP server probes'
// series, TestServerNewSeriesAreNotLost; the call probes', TestCallNewSeriesAreNotLost; the runtime probe's pauses,
// TestProcessSeriesAreNotLost). Counters keyed by something new take a plain hash whose one value every CPU adds
// to atomically; a per-CPU hash must be preallocated. Needs no root: it reads the compiled specs only.
func TestNoPerCPUHashWithoutPrealloc(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){
		"httpserver": httpserver.LoadBpf, "httpsock": httpsock.LoadBpf, "goruntime": goruntime.LoadBpf,
		"httpclient": httpclient.LoadBpf, "db": db.LoadBpf, "messaging": messaging.LoadBpf, "tcp": tcp.LoadBpf,
	} {
		spec, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for m, ms := range spec.Maps {
			if ms.Type == ebpf.PerCPUHash && ms.Flags&bpfFNoPrealloc != 0 {
				t.Errorf("%s: map %s is a per-CPU hash that is not preallocated: its new elements can fail under load", name, m)
			}
		}
	}
}
