// Package canary decides which release of a service a request goes to: the
// one the client names (X-Release-Tag header or release-tag cookie), or else
// a weighted split between the versions that have live instances.
package canary

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Header and Cookie name the release a client asks for.
const (
	Header = "X-Release-Tag"
	Cookie = "release-tag"
)

// Weights maps a version to its share of untagged traffic. Versions absent
// from the map get none while some listed version has instances; with no
// usable weights, every instance is eligible.
type Weights map[string]int

// Requested returns the release tag a request carries (header first), or nil.
func Requested(h *fasthttp.RequestHeader) []byte {
	if v := bytes.TrimSpace(h.Peek(Header)); len(v) > 0 {
		return v
	}
	return h.Cookie(Cookie)
}

// Pick chooses a version for an untagged request. present reports whether a
// version has live instances; r is a uniform random number in [0, 1<<63).
// "" means no preference.
func (w Weights) Pick(present func(string) bool, r uint64) string {
	total := 0
	for v, n := range w {
		if n > 0 && present(v) {
			total += n
		}
	}
	if total == 0 {
		return ""
	}
	x := int(r % uint64(total))
	// Map iteration order is random, which is fine: each version owns a
	// slice of [0,total) of its weight's size however they are laid out.
	for v, n := range w {
		if n <= 0 || !present(v) {
			continue
		}
		if x < n {
			return v
		}
		x -= n
	}
	return ""
}

// Heavier is the version of the greatest weight above v's among those
// present, or "" when none outweighs v. The chain moves a weighted request
// whose release's breaker is open only this way: from a canary to the
// stable release, which has the capacity for its share; the other way the
// stable release's share would land on a canary sized for a tenth of it
// (so a tie moves nothing either).
func (w Weights) Heavier(v string, present func(string) bool) string {
	best, most := "", w[v]
	for u, n := range w {
		if n > most && u != v && present(u) {
			best, most = u, n
		}
	}
	return best
}
