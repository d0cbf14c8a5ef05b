package proxy

import (
	"bytes"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// allowMethods answers OPTIONS *: the methods the gateway knows (it routes
// by path, any of them).
var allowMethods = strings.Join(methods[1:], ", ")

var slash = []byte("/")

// AbsoluteForm splits an absolute-form request target (RFC 9112 §3.2.2)
// into its authority and the rest (path and query, either may be empty).
// Only http and https URIs with a non-empty authority qualify, and no
// userinfo: RFC 9110 §4.2.4 has recipients treat it as an error, and
// §4.2.1 refuses an empty host.
func AbsoluteForm(target []byte) (authority, rest []byte, ok bool) {
	i := bytes.Index(target, []byte("://"))
	if i < 0 || !(asciiEqualFold(target[:i], "http") || asciiEqualFold(target[:i], "https")) {
		return nil, nil, false
	}
	authority = target[i+3:]
	if j := bytes.IndexAny(authority, "/?"); j >= 0 {
		authority, rest = authority[:j], authority[j:]
	}
	if len(authority) == 0 {
		return nil, nil, false
	}
	for _, c := range authority {
		if !authorityByte(c) {
			return nil, nil, false
		}
	}
	return authority, rest, true
}

// AdminPath is the path both transports match their admin paths (/healthz,
// /readyz) against: the request target as sent (the path of its
// absolute form), without the query. Not the server's parsed and
// normalised path: on fasthttp "//healthz" or "/%68ealthz" answered as
// /healthz, while the event loop left them to the chain (404).
//
// A request of a version the gateway does not speak has none: the chain
// answers it 505 and closes the connection (Begin). Answered 200 outside
// the chain, its connection stayed open, and the body the transports do
// not read for such a request (HeaderReceived) was taken for the next
// request and proxied.
func AdminPath(h *fasthttp.RequestHeader) []byte {
	if !SupportedVersion(h) {
		return nil
	}
	path := h.RequestURI()
	if len(path) > 0 && path[0] != '/' {
		_, path, _ = AbsoluteForm(path)
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return path
}

// regName marks the bytes of an RFC 3986 reg-name or IPv4 address:
// unreserved and sub-delims. Escapes are left out: no DNS name needs one.
var regName = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=") {
		t[c] = true
	}
	return t
}()

// validHost reports whether v is a Host value RFC 9110 §7.2 allows:
// uri-host [":" port], the host a non-empty reg-name, IPv4 address or
// bracketed IPv6 address, and no userinfo. RFC 9112 §3.2 makes any other
// value a 400. It is at least as strict as the fasthttp server's URI
// parser, which refuses some of them before the chain runs, so both
// transports refuse the same ones.
func validHost(v []byte) bool {
	if len(v) > 0 && v[0] == '[' {
		end := bytes.IndexByte(v, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(string(v[1:end]))
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		return len(v) == end+1 || (v[end+1] == ':' && digits(v[end+2:]))
	}
	for i, c := range v {
		if !regName[c] {
			return c == ':' && i > 0 && digits(v[i+1:])
		}
	}
	return len(v) > 0
}

// digits reports whether b is all decimal digits (a port; empty is one).
func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// authorityByte: RFC 3986 host and port (reg-name, IP literal, IPv4),
// without '@': the authority becomes the Host field sent upstream.
func authorityByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=%:[]", c) >= 0
}

// headLines is what scanLines finds in a raw header block.
type headLines struct {
	// hosts, codings and types count the Host, Transfer-Encoding and
	// Content-Type lines, each up to two.
	hosts, codings, types int
	// chunked: the last Transfer-Encoding line's value is exactly
	// "chunked" (in any letter case, between optional white space; a
	// folded value is not).
	chunked bool
	// emptyUA and emptyCookie count the User-Agent and Cookie lines whose
	// value is empty or white space (keepEmptyLines).
	emptyUA, emptyCookie int
	// folded: a line starts with white space, an obs-fold (RFC 9112 §5.2).
	folded bool
}

// scanLines reads, in one pass over a raw header block (the lines after
// the request line, as the parser received them; see fieldLines), the
// lines start and checkHead look for. One look at each line's first byte
// rules out most.
func scanLines(raw []byte) (l headLines) {
	const host, coding, ctype = "host:", "transfer-encoding:", "content-type:"
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		line := raw
		if i >= 0 {
			line = raw[:i]
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			l.folded = true
		}
		if len(raw) <= len(host) {
			break // too short for any name looked for, and the last line
		}
		switch raw[0] | 0x20 {
		case 'h':
			if l.hosts < 2 && asciiEqualFold(raw[:len(host)], host) {
				l.hosts++
			}
		case 'c':
			switch {
			case len(raw) > len(ctype) && asciiEqualFold(raw[:len(ctype)], ctype):
				l.types = min(l.types+1, 2)
			case emptyValue(line, "cookie:"):
				l.emptyCookie++
			}
		case 't':
			if l.codings < 2 && len(raw) > len(coding) && asciiEqualFold(raw[:len(coding)], coding) {
				l.codings++
				l.chunked = asciiEqualFold(bytes.Trim(line[len(coding):], " \t\r"), "chunked")
			}
		case 'u':
			if emptyValue(line, "user-agent:") {
				l.emptyUA++
			}
		}
		if i < 0 {
			break
		}
		raw = raw[i+1:]
	}
	return l
}

// fieldLines counts the lines of a raw header block (the lines after the
// request line, as the parser received them) that start with name (lower
// case, colon included), stopping at most. The parser keeps the last of a
// repeated field and drops a length it frames by the coding instead, so
// this is the one place left to see them.
func fieldLines(raw []byte, name string, most int) int {
	n := 0
	for len(raw) > len(name) {
		// The first byte first: most lines fail there.
		if raw[0]|0x20 == name[0] && asciiEqualFold(raw[:len(name)], name) {
			if n++; n == most {
				return n
			}
		}
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break
		}
		raw = raw[i+1:]
	}
	return n
}

// hasControl says whether b holds a control byte (below 0x20, or DEL).
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
