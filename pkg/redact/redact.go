// Package redact hides the secrets of a server address before a program
// shows it: in an error, a log line, a start-up banner. Those end up in
// terminals, CI logs and bug reports, while the address itself (which host,
// which database) is what a reader needs to act on them.
package redact

import (
	"net/url"
	"strings"
)

// Mask is what URL shows in place of a secret.
const Mask = "xxxxx"

// URL returns s, a server address as a user gave it, with every secret it
// may hold replaced by Mask and the rest kept where it can be told apart:
//
//   - a URL's password (postgres://bob:xxxxx@db:5432/shanhai), and a query
//     parameter whose name says it holds one (password=, pgx's sslpassword=,
//     a token=);
//   - the user of a nats://, tls://, ws:// or wss:// URL that has no
//     password: nats.go sends such a user as the token that authenticates it;
//   - the value of such a key in a key=value connection string
//     (host=db password=xxxxx, libpq's and pgx's other form);
//   - everything before the last '@' where url.Parse's reading cannot be
//     trusted, because which part is the password cannot be told: a string
//     url.Parse refuses, one read without a host (bob:pw@db parses as the
//     scheme "bob"), and one with an '@' outside its user info. An unencoded
//     '#', '/' or '?' in a password ends the authority early, and what is
//     left may still read as a host (pulsar://bob:2024#pw@pulsar is host bob,
//     port 2024, with no user) or as a user with the password's first part
//     (bob:pw@x#rest@host);
//   - all but the scheme of a URL url.Parse refuses that has no '@' at all:
//     what it refused may be a password typed where the host goes.
//
// s may be a comma-separated list (nats.go's server list, ETCD_ENDPOINTS):
// each address is redacted alone where the commas plainly separate
// addresses, and the list as one string where a comma may belong to one of
// them (a password's, a query's). What holds no secret, a host:port or a
// URL without credentials, comes back byte for byte, so it still pastes.
//
// url.URL.Redacted is not enough: it trusts url.Parse's reading, so it
// shows the misread URLs above whole, and hides neither a password in the
// query nor a NATS token.
func URL(s string) string {
	t, trim := trimmed(s)
	if keyValue(t) {
		return trim(maskKeyValue(t))
	}
	parts := strings.Split(s, ",")
	if len(parts) == 1 || !separable(parts) {
		return trim(one(t))
	}
	for i, p := range parts {
		pt, ptrim := trimmed(p)
		parts[i] = ptrim(one(pt))
	}
	return strings.Join(parts, ",")
}

// trimmed returns s without its surrounding blanks, and a function that
// puts them back around a result.
func trimmed(s string) (string, func(string) string) {
	t := strings.TrimSpace(s)
	start := strings.Index(s, t)
	lead, trail := s[:start], s[start+len(t):]
	return t, func(r string) string { return lead + r + trail }
}

// separable reports whether the comma-separated parts of a list can be
// redacted one by one. Not when a part with an '@' does not parse whole (the
// comma may be a password's: nats://bob:12,pw@host), nor when a part after
// the first has no scheme yet carries query or key=value syntax (the comma
// may be a query's, and the part a parameter of the URL before it).
func separable(parts []string) bool {
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if strings.Contains(p, "@") {
			if _, ok := parseWhole(p); !ok {
				return false
			}
		}
		if i > 0 && !strings.Contains(p, "://") && strings.ContainsAny(p, "?&;=") {
			return false
		}
	}
	return true
}

// one redacts a single address, t, with no surrounding blanks.
func one(t string) string {
	if t == "" {
		return t
	}
	if keyValue(t) {
		return maskKeyValue(t)
	}
	if u, ok := parseWhole(t); ok {
		return shown(t, u)
	}
	if at := strings.LastIndex(t, "@"); at >= 0 {
		start := 0
		if i := strings.Index(t, "://"); i >= 0 && i < at {
			start = i + len("://")
		}
		return t[:start] + Mask + maskQueryIn(t[at:])
	}
	u, err := url.Parse(t)
	if err == nil {
		return shown(t, u) // a path (sqlite:///data.db) or an opaque URL
	}
	if i := strings.Index(t, "://"); i >= 0 {
		return t[:i+len("://")] + Mask
	}
	return maskQueryIn(t) // host:port and lists of them, which url.Parse refuses
}

// parseWhole parses t as a URL with a host whose every '@' is the one that
// ends its user info: the reading URL may show with only its secrets masked.
func parseWhole(t string) (*url.URL, bool) {
	u, err := url.Parse(t)
	if err != nil || u.Host == "" {
		return nil, false
	}
	if n := strings.Count(t, "@"); n > 1 || n == 1 && u.User == nil {
		return nil, false
	}
	return u, true
}

// shown is t, which parsed as u, with its password, NATS token and secret
// query parameters masked; t itself when it has none, so that nothing else
// is re-encoded.
func shown(t string, u *url.URL) string {
	v := *u
	changed := false
	if v.User != nil {
		if _, ok := v.User.Password(); ok {
			v.User = url.UserPassword(v.User.Username(), Mask)
			changed = true
		} else if tokenSchemes[strings.ToLower(v.Scheme)] && v.User.Username() != "" {
			v.User = url.User(Mask)
			changed = true
		}
	}
	if q := maskQuery(v.RawQuery); q != v.RawQuery {
		v.RawQuery = q
		changed = true
	}
	if !changed {
		return t
	}
	return v.String()
}

// tokenSchemes are nats.go's URL schemes: it sends a user given without a
// password as an authentication token.
var tokenSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// maskQueryIn masks the secret parameters of the query in s, a URL or the
// end of one: from its first '?' to a '#'.
func maskQueryIn(s string) string {
	i := strings.IndexByte(s, '?')
	if i < 0 {
		return s
	}
	q, frag := s[i+1:], ""
	if j := strings.IndexByte(q, '#'); j >= 0 {
		q, frag = q[:j], q[j:]
	}
	return s[:i+1] + maskQuery(q) + frag
}

// maskQuery masks the values of secret parameters in a raw query, keeping
// every byte of the rest. It splits at ';' as well as '&': Go's query
// parsing drops a pair with a ';', but a password may still be in it.
func maskQuery(q string) string {
	if q == "" {
		return q
	}
	var b strings.Builder
	for q != "" {
		end := strings.IndexAny(q, "&;")
		pair, rest := q, ""
		if end >= 0 {
			pair, rest = q[:end], q[end:]
		}
		key, _, hasValue := strings.Cut(pair, "=")
		name := key
		if k, err := url.QueryUnescape(key); err == nil {
			name = k
		}
		if hasValue && secretName(name) {
			pair = key + "=" + Mask
		}
		b.WriteString(pair)
		if rest == "" {
			break
		}
		b.WriteByte(rest[0])
		q = rest[1:]
	}
	return b.String()
}

// secretName reports whether a parameter or key named name holds a secret.
// Masking a value that was none costs a reader little; showing one that was
// costs its owner a new password.
func secretName(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "pwd", "secret", "token"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// keyValue reports whether t is a key=value connection string (host=db
// port=5432 ...): it begins with a name and an '='. No URL does: a scheme
// has no '=', and a user:password@host has its ':' before any.
func keyValue(t string) bool {
	i := 0
	for i < len(t) && (t[i] == '_' || isLetter(t[i]) || i > 0 && t[i] >= '0' && t[i] <= '9') {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(t) && isSpace(t[i]) {
		i++
	}
	return i < len(t) && t[i] == '='
}

// maskKeyValue masks the secret values of a key=value connection string,
// in the syntax libpq and pgx read: a value is a run without blanks or a
// single-quoted string, and a backslash escapes the byte after it. From the
// first point it does not follow that syntax (a key without '=', a quote
// never closed), the rest is masked whole: where a value ends there cannot
// be told.
func maskKeyValue(t string) string {
	var b strings.Builder
	i := 0
	for {
		j := i
		for j < len(t) && isSpace(t[j]) {
			j++
		}
		b.WriteString(t[i:j])
		if i = j; i == len(t) {
			return b.String()
		}
		for j < len(t) && t[j] != '=' && !isSpace(t[j]) {
			j++
		}
		key := t[i:j]
		for j < len(t) && isSpace(t[j]) {
			j++
		}
		if j == len(t) || t[j] != '=' {
			return b.String() + Mask
		}
		j++
		for j < len(t) && isSpace(t[j]) {
			j++
		}
		b.WriteString(t[i:j])
		end, ok := valueEnd(t, j)
		if !ok {
			return b.String() + Mask
		}
		if secretName(key) {
			b.WriteString(Mask)
		} else {
			b.WriteString(t[j:end])
		}
		i = end
	}
}

// valueEnd returns where the key=value value starting at t[i] ends, and
// false for a quoted one that never does.
func valueEnd(t string, i int) (int, bool) {
	quoted := i < len(t) && t[i] == '\''
	if quoted {
		i++
	}
	for i < len(t) {
		switch {
		case t[i] == '\\':
			i += 2
			continue
		case quoted && t[i] == '\'':
			return i + 1, true
		case !quoted && isSpace(t[i]):
			return i, true
		}
		i++
	}
	return len(t), !quoted
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
