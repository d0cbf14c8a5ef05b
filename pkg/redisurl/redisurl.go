// Package redisurl reads REDIS_URL for a service that answers without Redis
// (caches, limits with a local fallback): go-redis's own defaults suit a
// store the service cannot do without, not a cache it can skip.
package redisurl

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Timeout bounds each dial, read and write that REDIS_URL leaves unbounded.
// go-redis's defaults (5 s dial, 3 s read) ignore a request's deadline, so a
// Redis that accepted connections and never answered (paused, or cut off by
// a partition) held every request 3–5 s, past a caller's 2 s deadline, and
// the database read that should have stood in for the cache failed with it.
const Timeout = 250 * time.Millisecond

// Parse is redis.ParseURL, then Timeout for each of dial_timeout,
// read_timeout and write_timeout the URL does not set, and no retries unless
// it sets max_retries: a failed cache call is skipped, not retried (go-redis
// retried a timed-out pipeline three times with backoff, 2.2 s on a hung
// Redis even at Timeout).
//
// A new connection opens with HELLO alone (and SELECT for a database above
// 0): see quietHandshake for the two commands go-redis would add.
//
// It refuses what go-redis would misread rather than reject: a '#' (a
// password's, left unencoded, made the rest of the URL a fragment and part of
// the password the host), a negative database number (go-redis selects
// only one above 0, so it used database 0), one above 2^31-1 (Redis's SELECT
// refuses it, so every command failed at run time rather than the start),
// and a URL naming two different databases (see oneDB). Its errors never show the
// password: they are printed when a service refuses to start, and name the
// URL through redact.URL.
func Parse(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, parseError(raw, err)
	}
	if strings.Contains(raw, "#") {
		return nil, errors.New("redisurl: a Redis URL has no fragment, but this one has a '#': " +
			"percent-encode it as %23 (in a password, say)")
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		// An unencoded '/' or '?' in a password ends the user info early:
		// url.Parse reads the digits before it as the port and the rest of
		// the password, up to its '@', as the path or query, and go-redis's
		// error quotes those. An '@' there may be that mark; a URL with one
		// that go-redis takes (a client_name=svc@host) is left alone.
		if strings.Contains(u.EscapedPath()+u.RawQuery, "@") {
			return nil, fmt.Errorf("redisurl: %s is not a Redis URL: percent-encode any %%, #, /, ?, @ or : "+
				"in its user name or password", redact.URL(raw))
		}
		return nil, fmt.Errorf("redisurl: %s: %w", redact.URL(raw), err)
	}
	if err := oneDB(u); err != nil {
		return nil, err
	}
	if opt.DB < 0 || opt.DB > math.MaxInt32 {
		return nil, fmt.Errorf("redisurl: database %d is out of range: want 0 to %d", opt.DB, math.MaxInt32)
	}
	for _, d := range []*time.Duration{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout} {
		if *d == 0 {
			*d = Timeout
		}
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1 // go-redis: -1 is none, 0 its default of 3
	}
	quietHandshake(opt)
	return opt, nil
}

// oneDB refuses a URL whose path and db query parameters name different
// databases. go-redis lets ?db= override the path and takes the last of
// several, silently: redis://host/1?db=2 used database 2, where a reader of
// the URL (or of a config diff changing only the path) expects 1, and a
// cache sharing a database with another service's keys is a bug nobody sees.
// The same number named twice is allowed. A unix:// URL's path is its socket.
func oneDB(u *url.URL) error {
	var named []string
	if u.Scheme != "unix" {
		if p := strings.Trim(u.Path, "/"); p != "" {
			named = append(named, p)
		}
	}
	for _, v := range u.Query()["db"] {
		if v != "" {
			named = append(named, v)
		}
	}
	var first int
	for i, v := range named {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("redisurl: invalid database number %q", v)
		}
		if i == 0 {
			first = n
		} else if n != first {
			return fmt.Errorf("redisurl: the URL names database %s and database %s: "+
				"name one, once (redis://host:port/<db>)", named[0], v)
		}
	}
	return nil
}

// quietHandshake turns off the two commands go-redis v9 adds to every new
// connection's HELLO, which this platform has no use for. The Redis 7.0 it
// runs on natively refuses both, so each was a round trip answered with an
// error, paid inside the first call on the connection:
//
//   - CLIENT MAINT_NOTIFICATIONS asks for notices of a coming failover or
//     slot migration, which Redis Enterprise and Redis Cloud send; open
//     source Redis has none to send. (In go-redis's default "auto" mode a
//     refusal turns it off for the client, so it cost the first connection
//     of each client.)
//   - CLIENT SETINFO (Redis 7.2 and later) labels the connection with the
//     library's name and version in CLIENT LIST. Every service would be
//     labelled go-redis with the same version and nothing in the platform
//     reads the label, so on the 7.4 of compose and Kubernetes it would buy
//     nothing for its round trip per connection either. Set ClientName (a
//     client_name= in REDIS_URL) to tell services apart in CLIENT LIST.
func quietHandshake(opt *redis.Options) {
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// parseError says why raw is not a URL without repeating it: url.Parse's
// error quotes the whole URL, password included, and its reason may quote
// part of the password (`invalid URL escape "%zz"`, or `invalid port` with
// what followed a '/' in the password). A reason that quotes anything found
// before raw's last '@' (its user info, or what may be) is replaced by the
// usual cause.
func parseError(raw string, err error) error {
	reason := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		reason = ue.Err.Error()
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 && quotesFrom(reason, raw[:i]) {
		reason = "percent-encode any %, #, /, ?, @ or : in its user name or password"
	}
	return fmt.Errorf("redisurl: %s is not a valid URL: %s", redact.URL(raw), reason)
}

// quotesFrom reports whether a "quoted" part of msg occurs in s (a port is
// quoted with the ':' before it, which s need not share).
func quotesFrom(msg, s string) bool {
	parts := strings.Split(msg, `"`)
	for i := 1; i < len(parts)-1; i += 2 {
		if q := strings.TrimPrefix(parts[i], ":"); q != "" && strings.Contains(s, q) {
			return true
		}
	}
	return false
}
