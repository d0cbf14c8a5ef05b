// Package authn is the gateway's side of authentication: it finds the bearer
// token in an Authorization header and asks pkg/auth's verifier about it.
//
// Verified tokens are cached in pkg/auth (the platform's one token cache,
// also used by the services): an Ed25519 check costs tens of microseconds,
// several times what the rest of the gateway spends on a request, while a
// client sends the same access token for its whole 15-minute life. The
// gateway asks with the header bytes fasthttp holds (auth.VerifyBytes), so a
// cached token costs no copy. A cached token answers only what a fresh
// verification would: until exp plus the verifier's leeway, and only while
// the key set still holds the key it was verified with.
package authn

import (
	"bytes"
	"context"
	"errors"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// ErrNoToken means the Authorization header carries no bearer token.
var ErrNoToken = errors.New("no bearer token")

// Bearer extracts the token from an Authorization value ("Bearer <t>",
// scheme case-insensitive), or nil.
func Bearer(authz []byte) []byte {
	const scheme = "bearer "
	if len(authz) <= len(scheme) || !bytes.EqualFold(authz[:len(scheme)], []byte(scheme)) {
		return nil
	}
	return bytes.TrimSpace(authz[len(scheme):])
}

// Verifier maps a bearer token to its subject with pkg/auth's verifier (the
// proxy's Authenticator).
type Verifier struct{ V *auth.Verifier }

// Subject verifies token, or finds it verified, and returns its subject;
// ErrNoToken when there is none.
func (v Verifier) Subject(ctx context.Context, token []byte) (string, error) {
	if len(token) == 0 {
		return "", ErrNoToken
	}
	c, err := v.V.VerifyBytes(ctx, token)
	if err != nil {
		return "", err
	}
	return c.Subject, nil
}
