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
//     or fragment parameter whose name says it holds a secret (password=,
//     pgx's sslpassword=, pass=, token=, bearer=, jwt=, session=, api_key=,
//     auth=, sig=: secretName has the list);
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
// each address is redacted alone where the commas plainly separate URLs of
// one scheme, and the list as one string where a comma may belong to one of
// them (a password's, a query's). What holds no secret, a host:port or a
// URL without credentials, comes back byte for byte, so it still pastes.
//
// Some mistakes cannot be told from a valid address, and are read as their
// readers read them: an unencoded '&' or ';' in a query password, or a blank
// in an unquoted key=value password, ends it there, and what follows shows
// if it looks like another parameter.
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
// redacted one by one: when each is a URL of the first one's scheme that
// parses whole, with a plain host[:port] and a user info that is not empty
// (x://@host), and none but the last has a query. Otherwise a comma may be
// a password's (nats://bob:12,pw@host: the second part is no URL) or a
// query's (password=12,pw), and the list is redacted as one string. A
// password that itself holds a comma and the list's scheme
// (nats://bob:12,nats://x@host) cannot be told from a list.
func separable(parts []string) bool {
	first := strings.ToLower(scheme(strings.TrimSpace(parts[0])))
	if first == "" {
		return false
	}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, ok := parseWhole(p)
		if !ok || strings.ToLower(scheme(p)) != first || u.User != nil && u.User.String() == "" || !plainHost(u) {
			return false
		}
		if i < len(parts)-1 && strings.Contains(p, "?") {
			return false
		}
	}
	return true
}

// plainHost reports whether u's host is a name or address with at most a
// numeric port: url.Parse also takes bob:pw: (an empty port), where the
// "host" is a user and part of a password cut off at a comma.
func plainHost(u *url.URL) bool {
	name, port := u.Hostname(), u.Port()
	if strings.ContainsRune(name, ':') && !strings.HasPrefix(u.Host, "[") || strings.HasSuffix(u.Host, ":") {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
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
		return maskQueryIn(maskUser(t, u))
	}
	m := maskQueryIn(t)
	if strings.Contains(t, "@") {
		// Misread: keep what follows the last '@' that is not inside a
		// secret query value (password=pw@x would otherwise show x).
		at := strings.LastIndex(m, "@")
		if at < 0 {
			return scheme(t) + Mask
		}
		return scheme(m[:at]) + Mask + m[at:]
	}
	if _, err := url.Parse(t); err == nil || !strings.Contains(t, "://") {
		// A path (sqlite:///data.db), an opaque URL, or host:port and lists
		// of them, which url.Parse refuses.
		return m
	}
	return scheme(t) + Mask
}

// scheme is t's "scheme://", or "" for none: a "://" after something that
// cannot be a scheme (RFC 3986: a letter, then letters, digits, + - .) may
// be in a password (bob:pw://x@host).
func scheme(t string) string {
	i := strings.Index(t, "://")
	if i <= 0 || !isLetter(t[0]) {
		return ""
	}
	for j := 1; j < i; j++ {
		if c := t[j]; !isLetter(c) && (c < '0' || c > '9') && c != '+' && c != '-' && c != '.' {
			return ""
		}
	}
	return t[:i+len("://")]
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

// maskUser is t, which parsed whole as u, with its password masked, or its
// user where that is a NATS token. It works on t itself, which has one '@'
// (the user info's end) and its authority after the first "//", so that
// nothing else is re-encoded.
func maskUser(t string, u *url.URL) string {
	if u.User == nil {
		return t
	}
	start := strings.Index(t, "//") + len("//")
	at := strings.IndexByte(t, '@')
	info := t[start:at]
	if i := strings.IndexByte(info, ':'); i >= 0 {
		return t[:start+i+1] + Mask + t[at:]
	}
	if tokenSchemes[strings.ToLower(u.Scheme)] && info != "" {
		return t[:start] + Mask + t[at:]
	}
	return t
}

// tokenSchemes are nats.go's URL schemes: it sends a user given without a
// password as an authentication token.
var tokenSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// maskQueryIn masks the secret parameters of the query and fragment in s,
// a URL or the end of one, from its first '?' or '#': a fragment may hold
// parameters as a query does (an OAuth implicit grant's #access_token=).
func maskQueryIn(s string) string {
	i := strings.IndexAny(s, "?#")
	if i < 0 {
		return s
	}
	return s[:i+1] + maskQuery(s[i+1:])
}

// maskQuery masks the values of secret parameters in a raw query, keeping
// every byte of the rest. It takes a pair to begin after a '&', a ';' (Go's
// query parsing drops a pair with one, but a password may still be in it),
// a '?' (in a misread URL the first '?' may be a password's, and the
// query proper begins at a later one) or a '#' that ends a pair holding no
// secret (the fragment's parameters), and a secret's value to run on
// across a '?' or '#' (an unencoded '#' in a password leaves its end as the
// fragment), and across a pair that is no name=value (=pw, or pw with no
// '='): an unencoded '&' or ';' in it. A pair that is a name=value cannot
// be told from a parameter, and is shown as every reader of the query
// reads it.
func maskQuery(q string) string {
	var b strings.Builder
	inSecret := false
	for first := true; first || q != ""; first = false {
		sep := ""
		if !first {
			sep, q = q[:1], q[1:]
		}
		pair := q
		if end := strings.IndexAny(q, "&;?"); end >= 0 {
			pair = q[:end]
		}
		if hash := strings.IndexByte(pair, '#'); hash >= 0 {
			if k, _, ok := strings.Cut(pair[:hash], "="); !ok || !secretKey(k) {
				pair = pair[:hash]
			}
		}
		q = q[len(pair):]
		key, _, hasValue := strings.Cut(pair, "=")
		if inSecret && (sep == "?" || sep == "#" || !hasValue || !plainName(key)) {
			continue
		}
		inSecret = hasValue && secretKey(key)
		if inSecret {
			pair = key + "=" + Mask
		}
		b.WriteString(sep)
		b.WriteString(pair)
	}
	return b.String()
}

// secretKey reports whether key, a parameter's name as the raw query has
// it, names a secret once unescaped (api%5Fkey is api_key to every reader).
func secretKey(key string) bool {
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	return secretName(key)
}

// plainName reports whether key looks like a parameter's name.
func plainName(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isLetter(c) && (c < '0' || c > '9') && !strings.ContainsRune("_.-~%+", rune(c)) {
			return false
		}
	}
	return true
}

// secretName reports whether a parameter or key named name holds a secret.
// Masking a value that was none costs a reader little; showing one that was
// costs its owner a new password.
//
// The name is compared in lower case and without its '_', '-' and '.', so
// that api_key, API-Key and apikey are one name. It holds a secret when it
// contains one of secretParts, or is one of secretNames: those are too short
// to look for inside other names (key is in sslkey, which pgx reads as a
// file's path; auth in MongoDB's authSource; sig in design), so only the
// bare word counts.
func secretName(name string) bool {
	name = strings.ToLower(name)
	if strings.ContainsAny(name, "_-.") {
		name = strings.NewReplacer("_", "", "-", "", ".", "").Replace(name)
	}
	for _, s := range secretParts {
		if strings.Contains(name, s) {
			return true
		}
	}
	for _, s := range secretNames {
		if name == s {
			return true
		}
	}
	return false
}

// secretParts are the fragments that make a name a secret's wherever they
// stand in it: passwords (pgx's password and sslpassword, a key's
// passphrase), bearer and session tokens (token, access_token,
// X-Amz-Security-Token, bearer=, a JWT as jwt= or id_jwt=, a session id as
// sessionid=, JSESSIONID or PHPSESSID), API keys as collectors and webhooks
// take them in the query (api_key, x-api-key), cloud access and private
// keys, shared secrets (client_secret), request signatures (a presigned
// URL's X-Amz-Signature) and the credential they are signed with, and a
// whole Authorization value.
var secretParts = []string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "bearer", "jwt", "sessionid", "sessid",
	"apikey", "accesskey", "privatekey", "signature", "credential", "authorization",
}

// secretNames are the short names that hold a secret only as a whole name:
// key= (an API key), auth= (a token or user:password), sig= (an Azure
// shared access signature), pass= (a password: a camera's or a queue's
// ?user=bob&pass=; as a part it would take pgx's passfile, a path, and
// bypass) and session= (a session token or cookie; as a part it would take
// libpq's target_session_attrs, and a session_timeout).
var secretNames = []string{"key", "auth", "sig", "pass", "session"}

// keyValue reports whether t is a key=value connection string (host=db
// port=5432 ...): it begins with a name and an '='. No URL with a scheme
// does: a scheme has no '=', and a user:password@host has its ':' before
// any. One without a scheme may: nats.go takes TOKEN@host, and a base64
// token ends in '='. So a string with an '@' and no blank, one "pair" whose
// value runs on to a host, is read as user info, unless its key says it
// holds a secret (password=p@ss, whose value is then masked whole).
func keyValue(t string) bool {
	i := 0
	for i < len(t) && (t[i] == '_' || isLetter(t[i]) || i > 0 && t[i] >= '0' && t[i] <= '9') {
		i++
	}
	if i == 0 {
		return false
	}
	key := t[:i]
	for i < len(t) && isSpace(t[i]) {
		i++
	}
	if i == len(t) || t[i] != '=' {
		return false
	}
	return !strings.Contains(t, "@") || strings.ContainsFunc(t, isBlank) || secretName(key)
}

func isBlank(r rune) bool { return r < 0x80 && isSpace(byte(r)) }

// maskKeyValue masks the secret values of a key=value connection string,
// in the syntax libpq and pgx read: a value is a run without blanks or a
// single-quoted string, and a backslash escapes the byte after it. From the
// first point it does not follow that syntax (a key without '=', an '='
// without a key, a quote never closed), the rest is masked whole: where a value ends there cannot
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
		if key == "" || j == len(t) || t[j] != '=' {
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
// false for a quoted one that never does or runs on into more text.
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
			// A quoted value must end its pair: what follows the quote at
			// once may be the rest of a password.
			return i + 1, i+1 == len(t) || isSpace(t[i+1])
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
