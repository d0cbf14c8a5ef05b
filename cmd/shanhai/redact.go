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
// needs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err == nil && u.Host != "" {
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
