// Package session holds the rules of refresh tokens: opaque secrets stored
// only as hashes, used once, rotated on every use, grouped in families so
// that reuse of a spent token (the sign of a stolen one) ends the family.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotFound means no token has that hash.
	ErrNotFound = errors.New("refresh token not found")
	// ErrInvalid is what a client learns about any refresh token that cannot
	// be used: unknown, expired, revoked or already spent look the same.
	ErrInvalid = errors.New("refresh token is invalid")
	// ErrSpent means the token was used before: either a client bug or a
	// replay of a stolen token. The repository returns it when a rotation
	// loses the race to another, and the use case then revokes the family.
	ErrSpent = errors.New("refresh token already used")
)

// RefreshToken is the stored side of a refresh token. The secret itself is
// never stored: Hash is its SHA-256. A fast hash is right here (unlike for
// passwords) because the secret has 256 random bits; nothing can be guessed.
type RefreshToken struct {
	ID        string
	FamilyID  string
	UserID    string
	Hash      string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
	RevokedAt *time.Time
}

// Check tells whether the token can be exchanged now. A spent token answers
// ErrSpent so the caller can revoke the family; every other reason is
// ErrInvalid.
func (t RefreshToken) Check(now time.Time) error {
	switch {
	case t.RevokedAt != nil:
		return ErrInvalid
	case t.UsedAt != nil:
		return ErrSpent
	case !now.Before(t.ExpiresAt):
		return ErrInvalid
	}
	return nil
}

// Issue makes a new token for userID in family (a new family when family is
// ""), returning the secret to hand to the client once.
func Issue(id, family, userID string, now time.Time, ttl time.Duration) (RefreshToken, string, error) {
	secret, err := newSecret()
	if err != nil {
		return RefreshToken{}, "", err
	}
	if family == "" {
		family = id
	}
	return RefreshToken{
		ID:        id,
		FamilyID:  family,
		UserID:    userID,
		Hash:      Hash(secret),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}, secret, nil
}

// Hash is how a secret is looked up: hex SHA-256.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("refresh token secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Repository stores refresh tokens.
type Repository interface {
	Create(ctx context.Context, t RefreshToken) error
	// ByHash returns ErrNotFound for an unknown hash.
	ByHash(ctx context.Context, hash string) (RefreshToken, error)
	// Rotate marks old as used at now and stores next, atomically, only if
	// old is still unused and unrevoked; otherwise it stores nothing and
	// returns ErrInvalid if old is revoked by now (a logout that came first
	// is no reuse) and ErrSpent if it is used. This is what makes two
	// concurrent refreshes with one token end with one winner.
	Rotate(ctx context.Context, old RefreshToken, next RefreshToken, now time.Time) error
	// RevokeFamily revokes every token of the family that is not yet revoked.
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error
}
