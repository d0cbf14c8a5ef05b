package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the iss claim of every access token the user service signs and
// the value verifiers require by default.
const Issuer = "shanhai-user"

// Signer mints access tokens with its first (current) key and publishes the
// public halves of all its keys: tokens signed with the previous key keep
// verifying until they expire, and a next key is known to every verifier
// before any token names it (see KeyConfig for the rotation).
type Signer struct {
	current Key
	jwks    []byte
	now     func() time.Time
}

// NewSigner takes the current key first, then the keys it only publishes
// (previous and next, as KeyConfig.Keys orders them). It panics without a
// key: that is a wiring mistake, not a runtime condition.
func NewSigner(keys ...Key) *Signer {
	if len(keys) == 0 {
		panic("auth.NewSigner: no keys")
	}
	doc := jwks{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, publicJWK(k))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("auth.NewSigner: marshal jwks: %v", err))
	}
	return &Signer{current: keys[0], jwks: b, now: time.Now}
}

// Sign returns a compact JWS for sub that expires after ttl. Each token gets
// a random jti so two tokens issued in the same second still differ.
func (s *Signer) Sign(sub string, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", errors.New("sign: empty subject")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("sign: jti: %w", err)
	}
	now := s.now()
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   sub,
		ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.current.Kid
	signed, err := t.SignedString(s.current.Private)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signed, nil
}

// Kid names the key new tokens are signed with.
func (s *Signer) Kid() string { return s.current.Kid }

// JWKS is the public key set document (RFC 7517) served at
// /.well-known/jwks.json. The returned slice must not be modified.
func (s *Signer) JWKS() []byte { return s.jwks }

type jwks struct {
	Keys []jwk `json:"keys"`
}

// jwk carries only what an OKP Ed25519 public key needs (RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

func publicJWK(k Key) jwk {
	return jwk{
		Kty: "OKP",
		Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(k.Private.Public().(ed25519.PublicKey)),
		Kid: k.Kid,
		Alg: "EdDSA",
		Use: "sig",
	}
}
