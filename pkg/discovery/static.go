package discovery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Static is a fixed instance list, typically from DISCOVERY_STATIC, for
// places without etcd (a laptop, a single-host demo). It is both Registry
// and Resolver; registering only adds to this process's own list.
type Static struct {
	mu sync.RWMutex
	m  map[string][]Instance
}

// NewStatic parses "svc=host:port,svc=host:port" (spaces around entries are
// ignored; a service may appear more than once). The error names every bad
// entry.
func NewStatic(spec string) (*Static, error) {
	s := &Static{m: map[string][]Instance{}}
	var bad []string
	for entry := range strings.SplitSeq(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		svc, addr, ok := strings.Cut(entry, "=")
		svc, addr = strings.TrimSpace(svc), strings.TrimSpace(addr)
		if !ok || svc == "" || addr == "" || !strings.Contains(addr, ":") {
			bad = append(bad, fmt.Sprintf("%q", entry))
			continue
		}
		s.add(Instance{ID: addr, Service: svc, Addr: addr})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("discovery static spec: bad entries %s: want service=host:port[,service=host:port]",
			strings.Join(bad, ", "))
	}
	return s, nil
}

func (s *Static) add(in Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := slices.Clone(s.m[in.Service]) // readers may hold the old slice
	list = slices.DeleteFunc(list, func(x Instance) bool { return x.ID == in.ID })
	s.m[in.Service] = append(list, in)
}

// Register adds in to this process's list.
func (s *Static) Register(_ context.Context, in Instance) error {
	if err := in.check(); err != nil {
		return fmt.Errorf("register instance: %w", err)
	}
	s.add(in)
	return nil
}

// Deregister does nothing: a static list announces nothing to anyone.
func (s *Static) Deregister(context.Context) error { return nil }

// Instances returns the configured instances of service.
func (s *Static) Instances(service string) []Instance {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[service]
}
