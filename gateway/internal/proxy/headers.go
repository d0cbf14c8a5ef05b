package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// UserHeader carries the verified user id to upstreams. Clients can never set
// it: Sanitize removes every spelling of it before anything else runs.
const UserHeader = "X-User-ID"

// hopByHop are the RFC 9110 §7.6.1 connection-specific fields plus the
// de-facto ones (Keep-Alive, Proxy-Connection). A proxy must not forward them.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// Sanitize prepares a client request header for forwarding: it drops the
// hop-by-hop fields (and any field the Connection header names), and every
// field that would read as X-User-ID to some upstream framework: besides
// case, some stacks (CGI, nginx's underscores_in_headers) fold '_' into '-'.
func Sanitize(h *fasthttp.RequestHeader) {
	if conn := h.Peek("Connection"); len(conn) > 0 {
		// Delete what Connection names before deleting Connection itself;
		// Peek's slice is only valid until the header changes, so copy.
		var buf [128]byte
		names := append(buf[:0], conn...)
		for len(names) > 0 {
			var tok []byte
			tok, names = nextToken(names)
			if len(tok) > 0 {
				h.DelBytes(tok)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	// The client's wish to close is a hop-by-hop matter too: the upstream
	// connection is pooled regardless.
	h.ResetConnectionClose()

	h.Del(UserHeader)
	if hasUserLookalike(h) {
		var doomed [][]byte
		for k := range h.All() {
			if isUserHeader(k) {
				doomed = append(doomed, append([]byte(nil), k...))
			}
		}
		for _, k := range doomed {
			h.DelBytes(k)
		}
	}
}

// hasUserLookalike is a cheap pre-check: any header name of the right length
// that could fold to X-User-ID. It keeps the common path free of copies.
func hasUserLookalike(h *fasthttp.RequestHeader) bool {
	for k := range h.All() {
		if isUserHeader(k) {
			return true
		}
	}
	return false
}

// isUserHeader matches "x-user-id" ignoring case and treating '_' as '-'.
func isUserHeader(k []byte) bool {
	const want = "x-user-id"
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i] | 0x20 // ASCII lower case; maps '-'(0x2d) to itself
		if k[i] == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// SanitizeResponse drops hop-by-hop fields from an upstream response. The
// server writes its own Connection and framing headers.
func SanitizeResponse(h *fasthttp.ResponseHeader) {
	if conn := h.Peek("Connection"); len(conn) > 0 {
		var buf [128]byte
		names := append(buf[:0], conn...)
		for len(names) > 0 {
			var tok []byte
			tok, names = nextToken(names)
			if len(tok) > 0 {
				h.DelBytes(tok)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	h.ResetConnectionClose()
}

// nextToken splits the next comma-separated token off a list, trimmed.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		tok, rest = list[:i], list[i+1:]
	} else {
		tok, rest = list, nil
	}
	return bytes.TrimSpace(tok), rest
}

// Trusted is the set of proxy networks whose X-Forwarded-For is believed.
type Trusted []netip.Prefix

// Contains reports whether ip is one of the trusted proxies.
func (t Trusted) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP finds the client's address. Only a trusted peer's
// X-Forwarded-For counts, and within it only the hops appended by trusted
// proxies: walking from the right, the first untrusted address is the client
// (anything left of it is client-controlled). A malformed entry stops the
// walk at the last address known good.
func (t Trusted) ClientIP(peer netip.Addr, xff []byte) netip.Addr {
	peer = peer.Unmap()
	if len(xff) == 0 || !t.Contains(peer) {
		return peer
	}
	client := peer
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		item := bytes.TrimSpace(xff[i+1:])
		if i < 0 {
			xff = nil
		} else {
			xff = xff[:i]
		}
		ip, err := netip.ParseAddr(string(item))
		if err != nil {
			return client
		}
		client = ip.Unmap()
		if !t.Contains(client) {
			return client
		}
	}
	return client
}

// SetForwarded writes X-Forwarded-For/-Proto for the upstream. From a
// trusted peer the chain is extended; otherwise the client's claims are
// replaced by what the gateway saw.
func (t Trusted) SetForwarded(h *fasthttp.RequestHeader, peer netip.Addr, tls bool, scratch []byte) []byte {
	peer = peer.Unmap()
	trusted := t.Contains(peer)
	scratch = scratch[:0]
	if xff := h.Peek("X-Forwarded-For"); trusted && len(xff) > 0 {
		scratch = append(scratch, xff...)
		scratch = append(scratch, ", "...)
	}
	scratch = peer.AppendTo(scratch)
	h.SetBytesV("X-Forwarded-For", scratch)
	if !trusted || len(h.Peek("X-Forwarded-Proto")) == 0 {
		if tls {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if !trusted {
		h.Del("Forwarded")
		h.Del("X-Real-IP")
		h.Del("X-Forwarded-Host")
	}
	return scratch
}
