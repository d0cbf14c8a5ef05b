package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdRegistry registers instances under one etcd lease that a background
// keep-alive refreshes. If the process dies the keep-alives stop and etcd
// deletes the keys when the lease TTL runs out. If instead etcd is away long
// enough for the lease to lapse while the process lives, the registry grants
// a new lease and writes its instances again once etcd answers.
type EtcdRegistry struct {
	cli *clientv3.Client
	ttl time.Duration
	log *slog.Logger

	mu     sync.Mutex
	ins    map[string]Instance // by key
	lease  clientv3.LeaseID
	grantd time.Duration // TTL etcd actually granted
	cancel context.CancelFunc
	done   chan struct{}
}

// NewEtcdRegistry returns a registry whose keys live ttl after the last
// keep-alive (rounded to whole seconds; etcd may raise a very short TTL to its
// minimum, about 2s with default election settings).
func NewEtcdRegistry(cli *clientv3.Client, ttl time.Duration) *EtcdRegistry {
	return &EtcdRegistry{cli: cli, ttl: max(ttl, time.Second), log: slog.Default(), ins: map[string]Instance{}}
}

// WithLogger sets where lease loss and re-registration are logged.
func (r *EtcdRegistry) WithLogger(l *slog.Logger) *EtcdRegistry { r.log = l; return r }

// Register writes in under the registry's lease, granting the lease and
// starting keep-alives on first use (or using the one Grant obtained). An
// empty ID is filled with hostname-random; Service and Addr are required.
func (r *EtcdRegistry) Register(ctx context.Context, in Instance) error {
	if err := in.check(); err != nil {
		return fmt.Errorf("register instance: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ensureLease(ctx); err != nil {
		return err
	}
	if err := r.put(ctx, r.lease, in); err != nil {
		return err
	}
	r.ins[in.key()] = in
	return nil
}

// Grant obtains the lease and starts its keep-alives ahead of the first
// Register, which then only writes its key. A service calls it while it opens
// its other connections: each is an etcd write (a WAL fsync), and the listen
// address Register needs is known only later. Deregister revokes the lease as
// usual; a lease nobody registered under just expires with the process.
func (r *EtcdRegistry) Grant(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ensureLease(ctx)
}

// ensureLease grants the lease and starts keep-alives unless done; r.mu held.
func (r *EtcdRegistry) ensureLease(ctx context.Context) error {
	if r.lease != 0 {
		return nil
	}
	lease, err := r.grant(ctx)
	if err != nil {
		return err
	}
	r.lease = lease
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.keepAlive(loopCtx, lease)
	return nil
}

func (r *EtcdRegistry) grant(ctx context.Context) (clientv3.LeaseID, error) {
	resp, err := r.cli.Grant(ctx, int64((r.ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("register: grant lease: %w", err)
	}
	r.grantd = time.Duration(resp.TTL) * time.Second
	return resp.ID, nil
}

func (r *EtcdRegistry) put(ctx context.Context, lease clientv3.LeaseID, in Instance) error {
	val, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("register %s: %w", in.key(), err)
	}
	if _, err := r.cli.Put(ctx, in.key(), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("register %s: %w", in.key(), err)
	}
	return nil
}

// keepAlive refreshes the lease until ctx ends or the client is closed. The
// etcd client closes the keep-alive channel when the lease is gone (expired
// while etcd was unreachable); then everything is written again under a new
// lease.
func (r *EtcdRegistry) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	defer close(r.done)
	backoff := 100 * time.Millisecond
	for {
		if ch, err := r.cli.KeepAlive(ctx, lease); err == nil {
			for range ch { //nolint:revive // draining is the point: responses carry nothing we need
			}
		}
		if ctx.Err() != nil || r.cli.Ctx().Err() != nil {
			return
		}
		r.log.Warn("discovery lease lost, registering again", "lease", int64(lease))
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			next, err := r.reregister(ctx)
			if err == nil {
				lease, backoff = next, 100*time.Millisecond
				break
			}
			if r.cli.Ctx().Err() != nil {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			r.log.Warn("discovery re-register failed", "error", err.Error())
		}
	}
}

func (r *EtcdRegistry) reregister(ctx context.Context) (clientv3.LeaseID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	lease, err := r.grant(ctx)
	if err != nil {
		return 0, err
	}
	for _, in := range r.ins {
		if err := r.put(ctx, lease, in); err != nil {
			return 0, err
		}
	}
	r.lease = lease
	return lease, nil
}

// Lease is the current lease (0 before Register and after Deregister).
func (r *EtcdRegistry) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// TTL is the lease TTL etcd granted, which may exceed the one asked for.
func (r *EtcdRegistry) TTL() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grantd
}

// Deregister stops the keep-alives and revokes the lease, which deletes every
// registered key at once, so watchers drop this process before it stops
// serving. Safe to call more than once.
func (r *EtcdRegistry) Deregister(ctx context.Context) error {
	r.mu.Lock()
	lease, cancel, done := r.lease, r.cancel, r.done
	r.lease, r.cancel, r.done = 0, nil, nil
	r.ins = map[string]Instance{}
	if cancel != nil {
		cancel() // under mu, so a re-register in flight sees it before writing
	}
	r.mu.Unlock()
	if lease == 0 {
		return nil
	}
	<-done
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("deregister: revoke lease %x: %w", int64(lease), err)
	}
	return nil
}
