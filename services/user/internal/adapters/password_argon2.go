package adapters

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// Argon2Params are argon2id's cost settings. Memory is in KiB.
type Argon2Params struct {
	Memory  uint32
	Time    uint32
	Threads uint8
	SaltLen int
	KeyLen  uint32
}

// The highest costs Verify accepts from a stored hash (1 GiB, 16 passes).
// Configuration must stay within them: a hash made with more could never be
// verified, and every login of that account would fail.
const (
	MaxArgon2MemoryKiB = 1 << 20
	MaxArgon2Time      = 16
)

// DefaultArgon2 is OWASP's first argon2id recommendation (19 MiB, 2 passes,
// 1 lane): strong enough, and small enough that a burst of logins on a
// 2-core box with a 15 MB idle footprint does not balloon memory.
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Argon2 hashes passwords with argon2id into PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>   (unpadded standard base64)
//
// golang.org/x/crypto/argon2 provides the function but no encoding; the PHC
// format is hand-written here (a few lines) so that hashes are portable to
// any other argon2 library. Verification reads the cost from the string, so
// raising Params later leaves old hashes verifiable.
type Argon2 struct {
	Params Argon2Params
	// slots bounds concurrent hashes: each takes Params.Memory, and a login
	// storm should queue rather than exhaust memory.
	slots chan struct{}
}

// NewArgon2 hashes with p and allows at most concurrency hashes at once.
func NewArgon2(p Argon2Params, concurrency int) *Argon2 {
	return &Argon2{Params: p, slots: make(chan struct{}, max(1, concurrency))}
}

var _ user.Hasher = (*Argon2)(nil)

// Hash returns the PHC string for password with a fresh random salt.
func (a *Argon2) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, a.Params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: salt: %w", err)
	}
	if err := a.acquire(ctx); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, a.Params.Time, a.Params.Memory, a.Params.Threads, a.Params.KeyLen)
	a.release()
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		a.Params.Memory, a.Params.Time, a.Params.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash never carries the hash itself: errors end up in logs.
var errBadHash = errors.New("unreadable argon2id hash")

// Verify recomputes the hash with the parameters stored in encoded and
// compares in constant time.
func (a *Argon2) Verify(ctx context.Context, password, encoded string) (bool, error) {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	if err := a.acquire(ctx); err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	a.release()
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash is true for a hash whose cost or sizes differ from Params
// (an unreadable one too: a fresh hash replaces it).
func (a *Argon2) NeedsRehash(encoded string) bool {
	p, salt, key, err := parsePHC(encoded)
	if err != nil {
		return true
	}
	return p.Memory != a.Params.Memory || p.Time != a.Params.Time || p.Threads != a.Params.Threads ||
		len(salt) != a.Params.SaltLen || uint32(len(key)) != a.Params.KeyLen
}

func (a *Argon2) acquire(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Argon2) release() { <-a.slots }

func parsePHC(s string) (Argon2Params, []byte, []byte, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Argon2Params{}, nil, nil, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return Argon2Params{}, nil, nil, errBadHash
	}
	var p Argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return Argon2Params{}, nil, nil, errBadHash
	}
	// Refuse costs no hash of ours would have: a corrupted row must not make
	// one login allocate gigabytes.
	if p.Memory < 8*uint32(p.Threads) || p.Memory > MaxArgon2MemoryKiB || p.Time < 1 || p.Time > MaxArgon2Time || p.Threads < 1 {
		return Argon2Params{}, nil, nil, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Argon2Params{}, nil, nil, errBadHash
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return Argon2Params{}, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
