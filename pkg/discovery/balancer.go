package discovery

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Balancer chooses one of a service's instances for a call. done must be
// called when the call ends (it releases the load P2C counts); ok is false
// when in is empty.
type Balancer interface {
	Pick(in []Instance) (chosen Instance, done func(), ok bool)
}

func noop() {}

// RoundRobin cycles through the instances in order. It ignores weights and
// load: right for equal instances and short, uniform calls.
func RoundRobin() Balancer { return &roundRobin{} }

type roundRobin struct{ n atomic.Uint64 }

func (r *roundRobin) Pick(in []Instance) (Instance, func(), bool) {
	if len(in) == 0 {
		return Instance{}, noop, false
	}
	return in[(r.n.Add(1)-1)%uint64(len(in))], noop, true
}

// P2C is "power of two choices": draw two instances at random and send the
// call to the one with fewer calls in flight per unit of weight. It avoids
// both round-robin's blindness to a slow instance and least-loaded's herd
// (every caller piling onto the same idle instance), at the cost of one
// counter per instance.
//
// The counters are keyed by instance ID and live as long as the balancer;
// memory grows with the number of distinct instances ever seen, which is
// bounded by deploy churn, not by traffic.
func P2C() Balancer { return &p2c{} }

type p2c struct{ load sync.Map } // id → *atomic.Int64

func (p *p2c) counter(id string) *atomic.Int64 {
	if c, ok := p.load.Load(id); ok {
		return c.(*atomic.Int64)
	}
	c, _ := p.load.LoadOrStore(id, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func (p *p2c) Pick(in []Instance) (Instance, func(), bool) {
	var pick Instance
	switch len(in) {
	case 0:
		return Instance{}, noop, false
	case 1:
		pick = in[0]
	default:
		i := rand.IntN(len(in))
		j := rand.IntN(len(in) - 1)
		if j >= i {
			j++
		}
		a, b := in[i], in[j]
		la, lb := p.counter(a.ID).Load(), p.counter(b.ID).Load()
		// Compare (load+1)/weight by cross-multiplying; the +1 lets weight
		// decide between two idle instances.
		if (la+1)*int64(b.weight()) <= (lb+1)*int64(a.weight()) {
			pick = a
		} else {
			pick = b
		}
	}
	c := p.counter(pick.ID)
	c.Add(1)
	var once atomic.Bool
	return pick, func() {
		if once.CompareAndSwap(false, true) {
			c.Add(-1)
		}
	}, true
}
