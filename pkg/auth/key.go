package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Key is one Ed25519 signing key and the kid that names it in token headers
// and in the JWKS document.
type Key struct {
	Kid     string
	Private ed25519.PrivateKey
}

// NewKey wraps a private key, naming it by its RFC 7638 thumbprint so that
// the kid follows from the key material and needs no configuration of its own.
func NewKey(priv ed25519.PrivateKey) Key {
	return Key{Kid: Thumbprint(priv.Public().(ed25519.PublicKey)), Private: priv}
}

// GenerateKey makes a fresh random key. It is meant for tests and for the
// explicit development opt-in: a generated key dies with the process, so every
// token it signed becomes invalid on restart.
func GenerateKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return NewKey(priv), nil
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an
// Ed25519 public key.
func Thumbprint(pub ed25519.PublicKey) string {
	// RFC 7638: the required members in lexicographic order, no whitespace.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParseKey reads an Ed25519 private key in PKCS #8 form, given as PEM, as
// base64 of the DER bytes (what fits in an environment variable), or as raw DER.
func ParseKey(data []byte) (Key, error) {
	der := data
	text := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(text, "-----BEGIN"):
		block, _ := pem.Decode([]byte(text))
		if block == nil {
			return Key{}, errors.New("parse key: bad PEM block")
		}
		der = block.Bytes
	default:
		if b, err := base64.StdEncoding.DecodeString(text); err == nil {
			der = b
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return Key{}, fmt.Errorf("parse key: want PKCS #8 Ed25519: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("parse key: want Ed25519, got %T", k)
	}
	return NewKey(priv), nil
}

// MarshalKey encodes a key as base64 PKCS #8 DER, the form ParseKey and
// KeyConfig accept from the environment.
func MarshalKey(k Key) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return "", fmt.Errorf("marshal key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// KeyConfig is the signer's key material as it arrives from the environment.
// Embed it in a service's config struct. Each key is given inline (base64
// PKCS #8 or PEM) or as a file path (for mounted secrets); a missing current
// key is an error unless DevKeys explicitly asks for a throwaway one, so a
// production deployment cannot silently run on a key nobody else knows.
type KeyConfig struct {
	Current      string `env:"AUTH_SIGNING_KEY" desc:"current Ed25519 signing key, base64 PKCS#8 DER or PEM"`
	CurrentFile  string `env:"AUTH_SIGNING_KEY_FILE" desc:"path to the current signing key (PEM, DER or base64); used when AUTH_SIGNING_KEY is empty"`
	Previous     string `env:"AUTH_PREVIOUS_KEY" desc:"previous signing key, still published in the JWKS during rotation"`
	PreviousFile string `env:"AUTH_PREVIOUS_KEY_FILE" desc:"path to the previous signing key"`
	DevKeys      bool   `env:"AUTH_DEV_KEYS" envDefault:"false" desc:"generate a throwaway key when none is configured (development only)"`
}

// ErrNoKey reports that no signing key is configured and the development
// opt-in is off.
var ErrNoKey = errors.New("no signing key: set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY_FILE, or AUTH_DEV_KEYS=true for a throwaway development key")

// Keys returns the configured keys, current first. generated reports whether
// the current key was generated under the development opt-in, so the caller
// can log a warning.
func (c KeyConfig) Keys() (keys []Key, generated bool, err error) {
	cur, err := loadKey(c.Current, c.CurrentFile)
	if err != nil {
		return nil, false, fmt.Errorf("current key: %w", err)
	}
	if cur == nil {
		if !c.DevKeys {
			return nil, false, ErrNoKey
		}
		k, err := GenerateKey()
		if err != nil {
			return nil, false, err
		}
		cur, generated = &k, true
	}
	keys = append(keys, *cur)
	prev, err := loadKey(c.Previous, c.PreviousFile)
	if err != nil {
		return nil, false, fmt.Errorf("previous key: %w", err)
	}
	if prev != nil && prev.Kid != cur.Kid {
		keys = append(keys, *prev)
	}
	return keys, generated, nil
}

func loadKey(inline, path string) (*Key, error) {
	data := []byte(inline)
	if inline == "" {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		data = b
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, err
	}
	return &k, nil
}
