// Package discovery lets services find each other's instances.
//
// A service registers its Instance on start (EtcdRegistry: a key under a
// lease that keep-alives refresh, so a crashed process vanishes within the
// lease TTL without anyone cleaning up) and deregisters first thing on
// shutdown. Callers read instances from a Resolver (EtcdResolver: one watch
// over every service feeding an in-memory snapshot, which keeps serving the
// last known instances while etcd is unreachable — a stale list of mostly
// live instances beats refusing every call) and choose one with a Balancer.
// Static is both Registry and Resolver for places without etcd.
//
// etcd layout: Prefix + <service> + "/" + <instance id> → JSON Instance.
package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Prefix is where instances live in etcd.
const Prefix = "/shanhai/services/"

// Instance is one running copy of a service.
type Instance struct {
	ID      string            `json:"id"`
	Service string            `json:"service"`
	Addr    string            `json:"addr"` // host:port, the port a number (see dialable)
	Version string            `json:"version,omitempty"`
	Zone    string            `json:"zone,omitempty"`
	Weight  int               `json:"weight,omitempty"` // relative share of traffic; ≤0 means 1, at most 1<<20 counts
	Meta    map[string]string `json:"meta,omitempty"`
}

func (in Instance) key() string { return Prefix + in.Service + "/" + in.ID }

// maxWeight caps an instance's weight: a million-to-one share is more than
// any deployment means, and it keeps P2C's (load+1)*weight products far from
// int64 overflow, which would reverse its choice.
const maxWeight = 1 << 20

func (in Instance) weight() int {
	if in.Weight <= 0 {
		return 1
	}
	return min(in.Weight, maxWeight)
}

func (in *Instance) check() error {
	var errs []error
	if in.Service == "" || strings.Contains(in.Service, "/") {
		errs = append(errs, fmt.Errorf("service %q: must be non-empty without '/'", in.Service))
	}
	if !dialable(in.Addr) {
		// Announced, an address callers cannot dial (ADVERTISE_ADDR
		// without its port, or as a URL) failed every call to this
		// instance while the service itself looked healthy.
		errs = append(errs, fmt.Errorf("addr %q: must be host:port with a port number", in.Addr))
	}
	if strings.Contains(in.ID, "/") {
		errs = append(errs, fmt.Errorf("id %q: must not contain '/'", in.ID))
	}
	if in.ID == "" {
		in.ID = newID()
	}
	return errors.Join(errs...)
}

// newID is hostname-random: readable in etcdctl output, unique across
// restarts of the same host.
func newID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strings.ReplaceAll(host, "/", "_") + "-" + hex.EncodeToString(b[:])
}

// Registry announces this process's instances.
type Registry interface {
	Register(ctx context.Context, in Instance) error
	Deregister(ctx context.Context) error
}

// Resolver lists the instances of a service. The returned slice is shared:
// callers must not modify it.
type Resolver interface {
	Instances(service string) []Instance
}
