package redact_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

func TestErrorNamesTheAddressWithoutItsSecret(t *testing.T) {
	const raw = "nats://bob:s3cr%zzet@127.0.0.1:4222"
	// What url.Parse(raw) answers, which nats.go and the Pulsar client
	// return as it is.
	var parseErr error = &url.Error{Op: "parse", URL: raw, Err: url.EscapeError("%zz")}
	refused := errors.New("nats: no servers available")
	for _, tc := range []struct {
		name   string
		err    error
		want   string
		unwrap error
	}{
		{"url.Parse's error", parseErr, "nats nats://xxxxx@127.0.0.1:4222 is not a valid URL", nil},
		{"a wrapped url.Parse error", errors.Join(errors.New("connect"), parseErr), "is not a valid URL", nil},
		{"another error", refused, "nats nats://xxxxx@127.0.0.1:4222: nats: no servers available", refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redact.Error("nats", raw, tc.err)
			if strings.Contains(got.Error(), "s3cr") || !strings.Contains(got.Error(), tc.want) {
				t.Errorf("Error = %q, want it to hold %q and no part of the password", got, tc.want)
			}
			if tc.unwrap != nil && !errors.Is(got, tc.unwrap) {
				t.Errorf("Error = %v does not wrap %v", got, tc.unwrap)
			}
		})
	}
}

// A URL that holds no secret keeps url.Parse's reason: a forgotten scheme
// was told to percent-encode a password it does not have. An error that
// quotes another URL, one with a secret, is still replaced.
func TestErrorKeepsTheReasonOfASecretFreeURL(t *testing.T) {
	const raw = "127.0.0.1:8081/jwks.json"
	// What url.Parse(raw) answers.
	var parseErr error = &url.Error{Op: "parse", URL: raw, Err: errors.New("first path segment in URL cannot contain colon")}
	got := redact.Error("JWKS_URL", raw, parseErr)
	if !strings.Contains(got.Error(), "first path segment in URL cannot contain colon") || !errors.Is(got, parseErr) {
		t.Errorf("Error = %q, want url.Parse's reason kept", got)
	}
	other := &url.Error{Op: "parse", URL: "nats://bob:s3cr%zz@h", Err: url.EscapeError("%zz")}
	if got := redact.Error("JWKS_URL", raw, other); strings.Contains(got.Error(), "s3cr") {
		t.Errorf("Error = %q shows the password of the URL its error quotes", got)
	}
}
