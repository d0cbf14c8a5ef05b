package session

import (
	"errors"
	"testing"
	"time"
)

func TestIssueAndCheck(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, secret, err := Issue("t1", "", "u1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tok.FamilyID != "t1" || tok.Hash != Hash(secret) || len(secret) < 40 || tok.Hash == secret {
		t.Fatalf("token = %+v secret=%q", tok, secret)
	}
	_, other, _ := Issue("t2", "t1", "u1", now, time.Hour)
	if other == secret {
		t.Fatal("two secrets are equal")
	}
	if err := tok.Check(now); err != nil {
		t.Fatal(err)
	}
	if err := tok.Check(now.Add(time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired: %v", err)
	}
	used := tok
	used.UsedAt = &now
	if err := used.Check(now); !errors.Is(err, ErrSpent) {
		t.Fatalf("used: %v", err)
	}
	revoked := used
	revoked.RevokedAt = &now
	if err := revoked.Check(now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked: %v", err)
	}
}
