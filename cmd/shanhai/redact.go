package main

import (
	"net/url"
	"strings"
)

// redactURL is s as the run may show it: in its messages, its logs and the
// banner, which end up in terminals, CI logs and bug reports. A server URL
// from the environment (PULSAR_URL, an OTLP endpoint, -native's
// DATABASE_URL) may carry a password; url.URL.Redacted hides it and keeps
// the rest, which says where the run looked. A string url.Parse refuses, or
// reads without a host while it has an @ (bob:pw@host parses as the scheme
// "bob"), has everything between its scheme and its last @ hidden instead:
// which part is the password cannot be told, and the host is what a reader
// needs. So has one url.Parse reads with a host but where an @ is left
// outside its user: an unencoded #, / or ? in a password ends the authority
// early, and what is left before it may still read as a host
// (pulsar://bob:2024#pw@pulsar parses as host bob, port 2024, no user) or
// as a user with the first part of the password (bob:pw@x#rest@host).
func redactURL(s string) string {
	if u, ok := parseWhole(s); ok {
		if u.User == nil {
			return s
		}
		return u.Redacted()
	}
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return s[:start] + "xxxxx" + s[at:]
}

// parseWhole parses s as a URL with a host, and reports whether that
// reading can be shown (Redacted) or dialled: not when an @ is left outside
// its user, the mark of a password url.Parse cut short (see redactURL).
func parseWhole(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, false
	}
	if n := strings.Count(s, "@"); n > 1 || n == 1 && u.User == nil {
		return nil, false
	}
	return u, true
}
