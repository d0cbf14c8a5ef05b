// Package upstream holds what the gateway knows about each upstream service:
// its live endpoints (from discovery), one keep-alive connection pool per
// endpoint, and the service's circuit breaker and adaptive concurrency limit.
package upstream

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/retry"
)

// Instance is one registered copy of a service, as discovery reports it.
type Instance struct {
	ID, Addr, Version string
}

// Breaker is a circuit breaker (pkg/breaker satisfies it). Admit, not
// Allow: an attempt the client's own deadline ended says nothing about the
// upstream and is reported as breaker.Ignored. Declared here, a breaker
// that can only take success or failure does not compile; the proxy's
// fallback to Allow made every ignored attempt a success, silently.
type Breaker interface {
	Admit() (done func(breaker.Outcome), err error)
}

// Concurrency is an adaptive concurrency limit (pkg/limit.Adaptive
// satisfies it): Done or Forget once per admitted call, with its ticket;
// Forget for a call that tells nothing about the upstream (neither a
// healthy completion nor congestion).
type Concurrency interface {
	Admit() (limit.Ticket, bool)
	Done(t limit.Ticket, latency time.Duration, failed bool)
	Forget(t limit.Ticket)
}

// Budget is a retry budget (pkg/retry.Budget satisfies it): every request
// is counted (at the caller's clock reading), every retry must be taken
// from it, and a retry taken but not sent (the pick refused it) is
// refunded.
type Budget interface {
	RequestAt(now time.Time)
	Take() (retry.Withdrawal, bool)
}

// Endpoint is an instance with its connection pool and in-flight count.
type Endpoint struct {
	Instance
	Client   *fasthttp.HostClient
	inflight atomic.Int64
	// ejectedUntil (monotonic nanoseconds, see eject.go; 0: never
	// ejected) and ejections (in a row, without a success) are Eject's.
	ejectedUntil atomic.Int64
	ejections    atomic.Int32
	// release is the breaker of e's version (Pool.SetBreakers), nil
	// without one; set once, before or after e is published.
	release atomic.Pointer[releaseBreaker]
}

// releaseBreaker boxes a Breaker for an atomic pointer.
type releaseBreaker struct{ Breaker }

// Begin and End bracket one request, feeding the balancer.
func (e *Endpoint) Begin() { e.inflight.Add(1) }

// End marks a request to e as finished.
func (e *Endpoint) End() { e.inflight.Add(-1) }

// Service is one upstream service.
type Service struct {
	Name string
	// Breaker is the breaker of every version whose instances have none of
	// their own (Pool.SetBreakers); nil: no breaker.
	Breaker Breaker
	Limit   Concurrency // nil: no adaptive limit
	Budget  Budget      // nil: retries limited by attempts only
	snap    atomic.Pointer[snapshot]
	ejectMu sync.Mutex // serialises Eject
	// releases are the breakers of the versions with instances
	// (Pool.SetBreakers); Pool.mu guards it.
	releases map[string]*releaseBreaker
}

// BreakerFor returns the breaker that decides for e: its version's, or
// the service's Breaker when e's version has none (nil: no breaker).
func (s *Service) BreakerFor(e *Endpoint) Breaker {
	if b := e.release.Load(); b != nil {
		return b.Breaker
	}
	return s.Breaker
}

type snapshot struct {
	all       []*Endpoint
	byVersion map[string][]*Endpoint
	key       string // identity of the instance set, to skip no-op updates
}

// ErrNoInstance means discovery knows no live instance (of the version asked).
var ErrNoInstance = errors.New("no live instance")

// Versions reports which versions currently have instances.
func (s *Service) Versions() map[string][]*Endpoint {
	if sn := s.snap.Load(); sn != nil {
		return sn.byVersion
	}
	return nil
}

// Pick chooses an endpoint by the power of two choices on in-flight
// requests, among instances of version (any version when empty). avoid, when
// there is an alternative, is skipped: a retry should go elsewhere. An
// ejected instance (Eject) is not picked while another is in service.
//
// The balancer is here rather than pkg/discovery's P2C because the in-flight
// count lives on the Endpoint next to its pool: no map lookup, no closure
// per request on the hot path.
func (s *Service) Pick(version string, avoid *Endpoint) (*Endpoint, error) {
	sn := s.snap.Load()
	if sn == nil {
		return nil, ErrNoInstance
	}
	cands := sn.all
	if version != "" {
		cands = sn.byVersion[version]
	}
	switch len(cands) {
	case 0:
		return nil, ErrNoInstance
	case 1:
		return cands[0], nil
	}
	i := rand.IntN(len(cands))
	j := rand.IntN(len(cands) - 1)
	if j >= i {
		j++
	}
	a, b := cands[i], cands[j]
	if a.ejectedUntil.Load()|b.ejectedUntil.Load() != 0 {
		// Two loads on every pick; the clock is read only when one of
		// the two was ever ejected.
		a, b = inService(cands, a, b, avoid)
	}
	if a == avoid {
		return b, nil
	}
	if b == avoid {
		return a, nil
	}
	if b.inflight.Load() < a.inflight.Load() {
		return b, nil
	}
	return a, nil
}
