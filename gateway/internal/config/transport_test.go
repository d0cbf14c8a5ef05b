package config

import (
	"strings"
	"testing"
)

// auto is the event loop except where only fasthttp can serve (TLS); an
// explicit loop with TLS is refused rather than served in plain text.
func TestTransport(t *testing.T) {
	for _, c := range []struct {
		env, cert, want string
		bad             bool
	}{
		{"auto", "", "loop", false},
		{"auto", "cert.pem", "fasthttp", false},
		{"fasthttp", "", "fasthttp", false},
		{"loop", "", "loop", false},
		{"loop", "cert.pem", "", true},
		{"epoll", "", "", true},
	} {
		cfg := Config{Mode: "full", Routes: "/a=a", Transport: c.env, TLSCertFile: c.cert}
		if c.cert != "" {
			cfg.TLSKeyFile = "key.pem"
		}
		err := cfg.Validate() // other variables are left invalid: only this one's verdict counts
		if named := err != nil && strings.Contains(err.Error(), "GATEWAY_TRANSPORT"); named != c.bad {
			t.Fatalf("%s with cert %q: Validate = %v, want GATEWAY_TRANSPORT named: %v", c.env, c.cert, err, c.bad)
		}
		if !c.bad && cfg.TransportName() != c.want {
			t.Fatalf("%s with cert %q: transport %s, want %s", c.env, c.cert, cfg.TransportName(), c.want)
		}
	}
}
