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
