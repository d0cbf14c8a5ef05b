package ports

import (
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
)

// clientIP is the address the login and sign-up limits count a request
// under: the peer's, unless the peer is one of trusted (the gateway), whose
// X-Forwarded-For (all its lines, in order) is then walked from the right to
// the first address not in trusted; what lies left of it is the client's to
// write. It reads the chain as the gateway does (its proxy.Trusted.ClientIP),
// so the two agree on who a client is:
//   - an entry with a port ("203.0.113.9:4711", "[2001:db8::1]:443", as some
//     load balancers write it) counts as its address;
//   - a malformed entry ends the walk at the last address known good;
//   - X-Real-IP is never read. The gateway does not write it and passes a
//     trusted peer's on as that peer's client sent it.
//
// gin's ClientIP differs on the last two: at an entry it cannot parse it
// gives up on the chain and takes X-Real-IP, so behind a proxy that writes
// ports a client chose its own address by that header (a fresh one per
// attempt and the per-IP quota never ran out), and without the header it
// took the peer's, so every client behind the gateway shared one quota.
func clientIP(c *gin.Context, trusted []netip.Prefix) string {
	peer, err := netip.ParseAddrPort(c.Request.RemoteAddr)
	if err != nil {
		return c.RemoteIP() // not a TCP peer (a test's or a unix socket's): as gin reads it
	}
	client := peer.Addr().Unmap()
	if !contains(trusted, client) {
		return client.String()
	}
	chain := strings.Join(c.Request.Header.Values("X-Forwarded-For"), ",")
	for chain != "" {
		var item string
		if i := strings.LastIndexByte(chain, ','); i >= 0 {
			chain, item = chain[:i], chain[i+1:]
		} else {
			chain, item = "", chain
		}
		item = strings.TrimSpace(item)
		ip, err := netip.ParseAddr(item)
		if err != nil {
			ap, err := netip.ParseAddrPort(item)
			if err != nil {
				break
			}
			ip = ap.Addr()
		}
		client = ip.Unmap()
		if !contains(trusted, client) {
			break
		}
	}
	return client.String()
}

func contains(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
