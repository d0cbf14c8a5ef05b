package upstream

import (
	"math/rand/v2"
	"time"
)

// Ejection takes an instance that refuses connections out of picking for a
// while, as Envoy's outlier detection and NGINX's max_fails/fail_timeout
// do. The breaker is per version (Pool.SetBreakers): a killed instance
// whose discovery lease has not lapsed yet refused every connection it was
// picked for, and those refusals, counted as its version's failures,
// opened the breaker for the live instances of that version too. A
// refused connect is the instance's fault alone and sends nothing, so the
// instance is ejected and the request goes to another one.
//
// The period starts at ejectBase and doubles with each ejection that
// follows without a success in between, up to ejectMax: an instance that
// is gone for good (until its lease lapses) is tried about once per
// period, one that restarted is back within ejectBase.
const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

// epoch anchors the monotonic readings the ejection deadlines are kept in
// (nanoseconds since epoch; 0 means not ejected), so that a wall-clock step
// neither ejects an instance for hours nor ends an ejection at once.
var epoch = time.Now()

// monotonic is now as nanoseconds since epoch, at least 1.
func monotonic(now time.Time) int64 { return max(1, int64(now.Sub(epoch))) }

// ejected reports whether e is out of picking at now (monotonic).
func (e *Endpoint) ejected(now int64) bool {
	u := e.ejectedUntil.Load()
	return u != 0 && now < u
}

// Succeeded ends e's run of ejections, so that its next ejection is a short
// one again, and clears its lapsed deadline, so that Pick stops reading
// the clock for it. A single atomic load when there is nothing to reset:
// this is on every answered request's path.
func (e *Endpoint) Succeeded() {
	if e.ejections.Load() != 0 {
		e.ejections.Store(0)
		e.ejectedUntil.Store(0)
	}
}

// Eject takes e, which refused a connection at now, out of picking for its
// next period, unless it is the last instance of its version in service:
// then nothing is ejected (picking it is the only way to reach that
// version, and its breaker decides whether to keep trying). It reports
// whether e is out of picking; only then may the failed attempt go
// elsewhere without counting as its version's failure. fresh says this
// refusal began the ejection: a refusal within a period already running
// (of a request sent to e before it began; the event loop fails every
// request queued on one dial at once) neither lengthens it nor counts as
// another ejection in a row, or a few requests in flight when an instance
// restarted kept it out for ejectMax instead of ejectBase.
func (s *Service) Eject(e *Endpoint, now time.Time) (out, fresh bool) {
	sn := s.snap.Load()
	if sn == nil {
		return false, false
	}
	t := monotonic(now)
	// Refusals are rare, so one lock per service serialises them: without
	// it two instances of a version refusing at once could each see the
	// other in service and both leave picking, and two refusals by one
	// instance could both see it in service and double its period.
	s.ejectMu.Lock()
	defer s.ejectMu.Unlock()
	other := false
	for _, c := range sn.byVersion[e.Version] {
		if c != e && !c.ejected(t) {
			other = true
			break
		}
	}
	if !other {
		return false, false
	}
	if e.ejected(t) {
		// Picked before its period began, or as the last resort of a
		// version all out (inService) which has come back since.
		return true, false
	}
	n := min(e.ejections.Add(1), 6) // 2^5 s > ejectMax
	d := min(ejectBase<<(n-1), ejectMax)
	e.ejectedUntil.Store(t + int64(d))
	return true, true
}

// inService replaces a and b, P2C's two draws from cands, when either is
// ejected: by the other one unless that is avoid, else by an instance in
// service found by a scan from a random place, so that the load on the
// ejected ones spreads (not avoid, if another is). With none in service, a
// and b stay: every instance refuses, and the breaker decides.
func inService(cands []*Endpoint, a, b, avoid *Endpoint) (*Endpoint, *Endpoint) {
	now := monotonic(time.Now())
	aOut, bOut := a.ejected(now), b.ejected(now)
	switch {
	case !aOut && !bOut:
		return a, b
	case !aOut && a != avoid:
		return a, a
	case !bOut && b != avoid:
		return b, b
	}
	var fallback *Endpoint
	off := rand.IntN(len(cands))
	for k := range cands {
		c := cands[(off+k)%len(cands)]
		if c.ejected(now) {
			continue
		}
		if c != avoid {
			return c, c
		}
		fallback = c
	}
	if fallback != nil {
		return fallback, fallback
	}
	return a, b
}
