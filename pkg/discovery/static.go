package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
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
// entry: one whose address callers could not dial (see dialable) is refused
// here, where the operator reads the message, rather than met as a failed
// call to that service on every request.
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
		if !ok || svc == "" || strings.Contains(svc, "/") || !dialable(addr) {
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

// dialable reports whether addr is a host:port the callers can dial: a
// host (name, IPv4, or IPv6 in brackets) with nothing in it a URL would carry
// (a scheme's "//", a path, credentials) and a port number from 1 to 65535.
// Named ports ("host:http") are refused too: the gateway's upstream dialer
// takes numbers only. Checking only for a ':' took a URL (user=http://h:8081)
// as an address, and the gateway then answered every call to the service 502.
func dialable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/@?# \t") {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
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
