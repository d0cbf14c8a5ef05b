package proxy

import (
	"bytes"
	"strings"
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

// authorityByte: RFC 3986 host and port (reg-name, IP literal, IPv4),
// without '@': the authority becomes the Host field sent upstream.
func authorityByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=%:[]", c) >= 0
}

// hostRepeated reports whether a raw header block (the lines after the
// request line, as the parser received them) holds more than one Host
// field. The parser keeps only the last, so this is the one place left to
// see the others.
func hostRepeated(raw []byte) bool {
	seen := false
	for len(raw) > 5 {
		if raw[0]|0x20 == 'h' && asciiEqualFold(raw[:5], "host:") {
			if seen {
				return true
			}
			seen = true
		}
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break
		}
		raw = raw[i+1:]
	}
	return false
}
