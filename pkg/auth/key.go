package auth

import (
	"bytes"
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

	"github.com/shanhai-dev/shanhai/pkg/config"
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
//
// Rotation takes three steps, because verifiers fetch the key set again
// only when a token names a kid they do not hold (at most once per their
// MinRefreshInterval) or theirs is older than MaxAge, and may fetch it from
// any replica: (1) set Next and roll out, so every replica publishes the
// next key while still signing with the current one; (2) wait until every
// replica runs so, and for the JWKS response's max-age, which an HTTP cache
// or an outside verifier may hold a set for; (3) promote
// it (Next becomes Current, Current becomes Previous) and roll out. In the
// third restart every replica, old or new, publishes both keys, so a
// verifier that fetches from an old one still finds the new key. Changing
// Current and Previous in one restart instead left a window: a gateway that
// fetched from a not-yet-restarted replica refused the new key's tokens
// until it might fetch again (TestTwoStepRotationRefusesTheNewKeyMeanwhile).
type KeyConfig struct {
	Current      string `env:"AUTH_SIGNING_KEY" desc:"current Ed25519 signing key, base64 PKCS#8 DER or PEM"`
	CurrentFile  string `env:"AUTH_SIGNING_KEY_FILE" desc:"path to the current signing key (PEM, DER or base64); used when AUTH_SIGNING_KEY is empty"`
	Previous     string `env:"AUTH_PREVIOUS_KEY" desc:"previous signing key, still published in the JWKS during rotation"`
	PreviousFile string `env:"AUTH_PREVIOUS_KEY_FILE" desc:"path to the previous signing key"`
	Next         string `env:"AUTH_NEXT_KEY" desc:"next signing key, published in the JWKS but never used to sign (rotation step 1: roll it out before promoting it to AUTH_SIGNING_KEY)"`
	NextFile     string `env:"AUTH_NEXT_KEY_FILE" desc:"path to the next signing key"`
	DevKeys      bool   `env:"AUTH_DEV_KEYS" envDefault:"false" desc:"generate a throwaway key when none is configured (development only)"`
}

// ErrNoKey reports that no signing key is configured and the development
// opt-in is off.
var ErrNoKey = errors.New("no signing key: set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY_FILE, or AUTH_DEV_KEYS=true for a throwaway development key")

// Keys returns the configured keys: the current first (the one Signer
// signs with), then the previous and the next, which are only published.
// generated reports whether the current key was generated under the
// development opt-in, so the caller can log a warning. A bad variable is a
// [config.VarError] naming it (see Validate).
func (c KeyConfig) Keys() (keys []Key, generated bool, err error) {
	cur, prev, next, err := c.load()
	if err != nil {
		return nil, false, err
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
	for _, k := range []*Key{prev, next} {
		if k != nil {
			keys = append(keys, *k)
		}
	}
	return keys, generated, nil
}

// Validate reads every configured key as Keys does, so that pkg/config's
// Load reports a bad one by its variable before the service starts. It does
// not require a current key: the embedding service says how it may go
// without one.
func (c KeyConfig) Validate() error {
	_, _, _, err := c.load()
	return err
}

// keyVar is one key's pair of variables.
type keyVar struct {
	name, inline, fileName, file string
}

// load reads the three keys (nil where unset), reporting each bad variable
// by name: a blank value (a stray space, an empty secret projected as a
// file) is a mistake, not a way to say "none", for which the variable is
// left unset; and the keys must differ, since a next or previous key equal
// to the current one publishes nothing the rotation needs (the previous key
// so set no longer publishes the key live tokens were signed with).
func (c KeyConfig) load() (cur, prev, next *Key, err error) {
	vars := [3]keyVar{
		{"AUTH_SIGNING_KEY", c.Current, "AUTH_SIGNING_KEY_FILE", c.CurrentFile},
		{"AUTH_PREVIOUS_KEY", c.Previous, "AUTH_PREVIOUS_KEY_FILE", c.PreviousFile},
		{"AUTH_NEXT_KEY", c.Next, "AUTH_NEXT_KEY_FILE", c.NextFile},
	}
	var (
		keys [3]*Key
		from [3]string // the variable each key came from
		errs []error
	)
	for i, v := range vars {
		keys[i], from[i], err = loadKey(v)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i := range keys {
		for j := range i {
			if keys[i] != nil && keys[j] != nil && keys[i].Kid == keys[j].Kid {
				errs = append(errs, config.Invalid(from[i], "is the same key as "+from[j]+" (kid "+keys[i].Kid+"): the current, previous and next keys must differ"))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, err
	}
	return keys[0], keys[1], keys[2], nil
}

// loadKey reads one key from its inline variable or, when that is empty,
// its file variable, and says which it came from.
func loadKey(v keyVar) (*Key, string, error) {
	name, data := v.name, []byte(v.inline)
	if v.inline == "" {
		if v.file == "" {
			return nil, "", nil
		}
		name = v.fileName
		if strings.TrimSpace(v.file) == "" {
			return nil, "", config.NotEmpty(name, v.file)
		}
		b, err := os.ReadFile(v.file)
		if err != nil {
			return nil, "", config.Invalid(name, fmt.Sprintf("read key file: %v", err))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, "", config.Invalid(name, fmt.Sprintf("key file %s is empty", v.file))
		}
		data = b
	} else if strings.TrimSpace(v.inline) == "" {
		return nil, "", config.NotEmpty(name, v.inline)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, "", config.Invalid(name, err.Error())
	}
	return &k, name, nil
}
