package redact

import (
	"errors"
	"fmt"
	"net/url"
)

// Error is err, what a client library answered when given the address raw,
// wrapped so that it names the address as URL shows it: "nats
// nats://bob:xxxxx@h:4222: nats: no servers available". what names the
// server ("nats", "pulsar"). A *url.Error, which the clients return from
// url.Parse as it is, quotes the address whole, password and all, and its
// reason may quote part of the password (invalid URL escape "%zz"): it is
// replaced by a message saying what to fix, and err's text is not kept,
// unless neither raw nor the URL the *url.Error quotes holds anything URL
// would hide: then its reason is the one thing to act on (a forgotten
// scheme, 127.0.0.1:8081/jwks.json, is no encoding mistake).
func Error(what, raw string, err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) && (URL(raw) != raw || URL(ue.URL) != ue.URL) {
		return fmt.Errorf("%s %s is not a valid URL: percent-encode any %%, #, /, ?, @ or : in its user name or password",
			what, URL(raw))
	}
	return fmt.Errorf("%s %s: %w", what, URL(raw), err)
}
