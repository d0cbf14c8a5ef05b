package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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

	// writing (a one-slot semaphore) lets one writer at a time (Register,
	// Grant, a re-registration, Deregister) work across its etcd calls, so
	// two first Registers share one lease and a re-registration writes every
	// instance. Waiting for it honours the waiter's context, unlike a mutex,
	// so a writer blocked on an unreachable etcd cannot hold up a shutdown.
	writing chan struct{}

	// mu guards the fields below and is never held across an etcd call.
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
	return &EtcdRegistry{
		cli: cli, ttl: max(ttl, time.Second), log: slog.Default(),
		writing: make(chan struct{}, 1), ins: map[string]Instance{},
	}
}

// WithLogger sets where lease loss and re-registration are logged.
func (r *EtcdRegistry) WithLogger(l *slog.Logger) *EtcdRegistry { r.log = l; return r }

// startWriting waits for the writer's slot until ctx ends; release with
// endWriting.
func (r *EtcdRegistry) startWriting(ctx context.Context) error {
	select {
	case r.writing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *EtcdRegistry) endWriting() { <-r.writing }

// Register writes in under the registry's lease, granting the lease and
// starting keep-alives on first use (or using the one Grant obtained). An
// empty ID is filled with hostname-random; Service and Addr are required.
func (r *EtcdRegistry) Register(ctx context.Context, in Instance) error {
	if err := in.check(); err != nil {
		return fmt.Errorf("register instance: %w", err)
	}
	if err := r.startWriting(ctx); err != nil {
		return fmt.Errorf("register %s: %w", in.key(), err)
	}
	defer r.endWriting()
	lease, err := r.ensureLease(ctx)
	if err != nil {
		return err
	}
	if err := r.put(ctx, lease, in); err != nil {
		return err
	}
	r.mu.Lock()
	r.ins[in.key()] = in
	r.mu.Unlock()
	return nil
}

// Grant obtains the lease and starts its keep-alives ahead of the first
// Register, which then only writes its key. A service calls it while it opens
// its other connections: each is an etcd write (a WAL fsync), and the listen
// address Register needs is known only later. Deregister revokes the lease as
// usual; a lease nobody registered under just expires with the process.
func (r *EtcdRegistry) Grant(ctx context.Context) error {
	if err := r.startWriting(ctx); err != nil {
		return fmt.Errorf("register: grant lease: %w", err)
	}
	defer r.endWriting()
	_, err := r.ensureLease(ctx)
	return err
}

// ensureLease returns the lease, granting it and starting keep-alives unless
// done; the caller holds the writer's slot.
func (r *EtcdRegistry) ensureLease(ctx context.Context) (clientv3.LeaseID, error) {
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if lease != 0 {
		return lease, nil
	}
	lease, ttl, err := r.grant(ctx)
	if err != nil {
		return 0, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.lease, r.grantd = lease, ttl
	r.cancel, r.done = cancel, make(chan struct{})
	done := r.done
	r.mu.Unlock()
	go r.keepAlive(loopCtx, lease, done)
	return lease, nil
}

// grant asks etcd for a lease of r.ttl; it returns the TTL etcd granted.
func (r *EtcdRegistry) grant(ctx context.Context) (clientv3.LeaseID, time.Duration, error) {
	resp, err := r.cli.Grant(ctx, int64((r.ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, 0, fmt.Errorf("register: grant lease: %w", err)
	}
	return resp.ID, time.Duration(resp.TTL) * time.Second, nil
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

// keepAlive refreshes the lease until ctx ends or the client is closed, then
// closes done. The etcd client closes the keep-alive channel when the lease
// is gone (expired while etcd was unreachable); then everything is written
// again under a new lease.
func (r *EtcdRegistry) keepAlive(ctx context.Context, lease clientv3.LeaseID, done chan struct{}) {
	defer close(done)
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
			if ctx.Err() != nil || r.cli.Ctx().Err() != nil {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			r.log.Warn("discovery re-register failed", "error", err.Error())
		}
	}
}

// reregister grants a new lease and writes every instance under it. ctx is
// the keep-alive loop's: Deregister cancels it, which ends any etcd call here.
func (r *EtcdRegistry) reregister(ctx context.Context) (clientv3.LeaseID, error) {
	if err := r.startWriting(ctx); err != nil {
		return 0, err
	}
	defer r.endWriting()
	lease, ttl, err := r.grant(ctx)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	// Checked under mu because Deregister cancels under mu: once it has, no
	// new lease is recorded (an unused one expires by itself).
	if err := ctx.Err(); err != nil {
		r.mu.Unlock()
		return 0, err
	}
	r.lease, r.grantd = lease, ttl
	ins := make([]Instance, 0, len(r.ins))
	for _, in := range r.ins {
		ins = append(ins, in)
	}
	r.mu.Unlock()
	// A put cut short leaves keys under the recorded lease, which Deregister
	// revokes, or which the next attempt's puts move to its own lease.
	for _, in := range ins {
		if err := r.put(ctx, lease, in); err != nil {
			return 0, err
		}
	}
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
// serving. It returns by ctx's end even while etcd is unreachable (the lease
// then expires after its TTL). Safe to call more than once.
func (r *EtcdRegistry) Deregister(ctx context.Context) error {
	// Stop the keep-alive loop first: a re-registration in it may be blocked
	// on an unreachable etcd, and only its cancellation ends that call.
	before := r.stopKeepAlive()
	if err := r.startWriting(ctx); err != nil {
		return fmt.Errorf("deregister: wait for a registration in flight: %w", err)
	}
	defer r.endWriting()
	// A first Register or Grant that held the slot meanwhile has started a
	// loop under a new lease; no other starts while Deregister holds it.
	since := r.stopKeepAlive()
	for _, done := range [...]chan struct{}{before, since} {
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("deregister: stop keep-alives: %w", ctx.Err())
		}
	}
	r.mu.Lock()
	lease := r.lease
	r.lease = 0
	r.ins = map[string]Instance{}
	r.mu.Unlock()
	if lease == 0 {
		return nil
	}
	// A lease that lapsed before the loop could replace it took its keys
	// with it: there is nothing left to delete.
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("deregister: revoke lease %x: %w", int64(lease), err)
	}
	return nil
}

// stopKeepAlive cancels the keep-alive loop, if one runs, and returns the
// channel it closes when it has returned (nil if none ran).
func (r *EtcdRegistry) stopKeepAlive() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
	done := r.done
	r.cancel, r.done = nil, nil
	return done
}
