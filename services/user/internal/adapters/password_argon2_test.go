package adapters_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
)

// Cheap parameters keep the test fast; the format and checks are the same.
var testArgon2 = adapters.Argon2Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestArgon2PHC(t *testing.T) {
	h := adapters.NewArgon2(testArgon2, 2)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=8192,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(enc) {
		t.Fatalf("not a PHC argon2id string: %q", enc)
	}
	if strings.Contains(enc, "correct horse") {
		t.Fatal("password in hash")
	}
	again, _ := h.Hash(ctx, "correct horse battery")
	if again == enc {
		t.Fatal("same hash twice: salt not random")
	}
	if ok, err := h.Verify(ctx, "correct horse battery", enc); !ok || err != nil {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, err := h.Verify(ctx, "correct horse batterY", enc); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	// Hashes made with other parameters still verify: the cost is read
	// from the string.
	stronger := adapters.NewArgon2(adapters.Argon2Params{Memory: 16 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	if ok, _ := stronger.Verify(ctx, "correct horse battery", enc); !ok {
		t.Fatal("hash with older parameters no longer verifies")
	}
	if h.NeedsRehash(enc) {
		t.Fatal("fresh hash needs a rehash")
	}
	if !stronger.NeedsRehash(enc) || !h.NeedsRehash("$2a$10$bcrypt") {
		t.Fatal("outdated or foreign hash does not need a rehash")
	}
	parts := strings.Split(enc, "$")
	for name, bad := range map[string]string{
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuv",
		"argon2i":        strings.Replace(enc, "argon2id", "argon2i", 1),
		"huge memory":    strings.Replace(enc, "m=8192", "m=4194304", 1),
		"zero time":      strings.Replace(enc, "t=1", "t=0", 1),
		"bad version":    strings.Replace(enc, "v=19", "v=16", 1),
		"truncated salt": strings.Join(append(parts[:4:4], "c2Fs", parts[5]), "$"),
		"empty":          "",
	} {
		if ok, err := h.Verify(ctx, "correct horse battery", bad); ok || err == nil {
			t.Errorf("%s: ok=%v err=%v", name, ok, err)
		}
		if err != nil && strings.Contains(err.Error(), parts[5]) {
			t.Errorf("%s: error leaks the hash", name)
		}
	}
}

// The bounds Verify puts on a stored hash are exactly the costs the
// configuration may ask for: hashes at the bound verify, one pass more does
// not (which is why config refuses ARGON2_TIME above MaxArgon2Time).
func TestArgon2CostBounds(t *testing.T) {
	ctx := context.Background()
	at := testArgon2
	at.Time = adapters.MaxArgon2Time
	atBound, err := adapters.NewArgon2(at, 1).Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := adapters.NewArgon2(testArgon2, 1).Verify(ctx, "correct horse battery", atBound); !ok || err != nil {
		t.Fatalf("hash at the time bound: ok=%v err=%v", ok, err)
	}
	over := at
	over.Time++
	enc, err := adapters.NewArgon2(over, 1).Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := adapters.NewArgon2(testArgon2, 1).Verify(ctx, "correct horse battery", enc); ok || err == nil {
		t.Fatalf("hash above the time bound: ok=%v err=%v, want refused", ok, err)
	}
	huge := strings.Replace(atBound, "m=8192", fmt.Sprintf("m=%d", adapters.MaxArgon2MemoryKiB+1), 1)
	if _, err := adapters.NewArgon2(testArgon2, 1).Verify(ctx, "x", huge); err == nil {
		t.Fatal("hash above the memory bound accepted")
	}
}

func BenchmarkArgon2Default(b *testing.B) {
	h := adapters.NewArgon2(adapters.DefaultArgon2, 1)
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "correct horse battery")
	for b.Loop() {
		_, _ = h.Verify(ctx, "correct horse battery", enc)
	}
}
