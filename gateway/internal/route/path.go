package route

import (
	"bytes"
	"errors"
)

// ErrBadPath is returned by Clean for request targets the gateway refuses to
// forward: not origin-form, invalid or dangerous escapes, control bytes, or a
// ".." that climbs above the root.
var ErrBadPath = errors.New("route: malformed request path")

// Clean returns the canonical form of an origin-form request path, appended to
// dst. The gateway matches routes and decides "public or not" on this form and
// forwards exactly this form, so the gateway and the upstream can never
// disagree about which resource a request names (the classic
// "/api/v1/products/../orders" auth bypass).
//
// Canonical means: percent-escapes of unreserved characters decoded, other
// escapes kept with upper-case hex, empty and "." segments removed, ".."
// resolved. Escaped "/", "\" and control bytes are refused rather than
// decoded, because upstream frameworks differ on how they treat them; so is
// a dot segment with path parameters ("..;", see dotParams). A
// trailing slash is kept: it is the upstream's business.
func Clean(dst, raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, ErrBadPath
	}
	base := len(dst)
	dst = append(dst, '/')
	i := 1
	for {
		// Copy one segment, decoded, then decide what it means.
		seg := len(dst)
		for i < len(raw) && raw[i] != '/' {
			c := raw[i]
			if c == '%' {
				if i+2 >= len(raw) {
					return dst[:base], ErrBadPath
				}
				hi, ok1 := unhex(raw[i+1])
				lo, ok2 := unhex(raw[i+2])
				if !ok1 || !ok2 {
					return dst[:base], ErrBadPath
				}
				b := hi<<4 | lo
				switch {
				case unreserved(b):
					dst = append(dst, b)
				case b == '/' || b == '\\' || b < 0x20 || b == 0x7f:
					return dst[:base], ErrBadPath
				default:
					dst = append(dst, '%', upperHex[b>>4], upperHex[b&15])
				}
				i += 3
				continue
			}
			// Raw controls, spaces, non-ASCII and backslashes are not valid
			// in a request target; '?' and '#' never reach here from a parsed
			// URI, so their presence means something is off.
			if c <= 0x20 || c >= 0x7f || c == '\\' || c == '#' || c == '?' {
				return dst[:base], ErrBadPath
			}
			dst = append(dst, c)
			i++
		}
		end := i >= len(raw)
		s := dst[seg:]
		switch {
		case len(s) == 0 || (len(s) == 1 && s[0] == '.'):
			dst = dst[:seg] // dropped; dst still ends in '/'
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			if seg-1 == base {
				return dst[:base], ErrBadPath // climbs above the root
			}
			j := seg - 2
			for dst[j] != '/' {
				j--
			}
			dst = dst[:j+1]
		case s[0] == '.' && dotParams(s):
			return dst[:base], ErrBadPath
		default:
			if !end {
				dst = append(dst, '/')
			}
		}
		if end {
			return dst, nil
		}
		i++ // the '/'
	}
}

// dotParams reports a "." or ".." segment with path parameters (".;x",
// "..;"), s starting with '.'. Servlet containers (Tomcat, Jetty) strip
// ";..." from each segment before they resolve dot segments, so
// "/api/v1/products/..;/orders" is the orders route there while the gateway,
// for which ";" is an ordinary byte, decided on the public products route.
// Refused, as escaped separators are: no upstream here takes path parameters.
func dotParams(s []byte) bool {
	i := bytes.IndexByte(s, ';')
	return i == 1 || i == 2 && s[1] == '.'
}

// Trailing slashes: "/a/" and "/a" stay different, while "/a/." and "/a/.."
// resolve like a browser would, to "/a/" and "/".

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unreserved reports RFC 3986 unreserved characters, which mean the same
// escaped or not and so are always decoded.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
