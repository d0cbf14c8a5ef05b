package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksServer serves doc and counts fetches.
func jwksServer(t testing.TB, doc func() []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc())
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := mustKey(t)
	s := NewSigner(k)
	srv, _ := jwksServer(t, s.JWKS)
	v := NewVerifier(srv.URL, VerifierOptions{})
	tok, err := s.Sign("user-1", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Subject != "user-1" || c.Issuer != Issuer || c.ID == "" {
		t.Fatalf("claims = %+v", c)
	}
	if d := time.Until(c.ExpiresAt); d < 14*time.Minute || d > 15*time.Minute+time.Second {
		t.Fatalf("exp in %v, want about 15m", d)
	}
	hdr := decodeSegment(t, tok, 0)
	if hdr["alg"] != "EdDSA" || hdr["kid"] != k.Kid {
		t.Fatalf("header = %v", hdr)
	}
}

func TestJWKSHasCurrentAndPreviousKeys(t *testing.T) {
	cur, prev := mustKey(t), mustKey(t)
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(NewSigner(cur, prev).JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 || doc.Keys[0]["kid"] != cur.Kid || doc.Keys[1]["kid"] != prev.Kid {
		t.Fatalf("jwks = %v", doc.Keys)
	}
	for _, k := range doc.Keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["x"] == "" {
			t.Fatalf("jwk = %v", k)
		}
		if _, private := k["d"]; private {
			t.Fatal("jwks leaks the private key")
		}
	}
}

// A token signed before a rotation (by what is now the previous key) keeps
// verifying against the rotated signer's JWKS.
func TestRotationKeepsPreviousTokensValid(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	tok, err := NewSigner(old).Sign("u", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rotated := NewSigner(next, old)
	v, err := NewStaticVerifier(rotated.JWKS(), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}
	// Once the old key is dropped, its tokens fail.
	v2, _ := NewStaticVerifier(NewSigner(next).JWKS(), VerifierOptions{})
	if _, err := v2.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
}

func decodeSegment(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encodeSegment(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Each case is an attack or a mistake that must end in an error.
func TestVerifyRejects(t *testing.T) {
	k := mustKey(t)
	s := NewSigner(k)
	v, err := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.Sign("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	pub := k.Private.Public().(ed25519.PublicKey)

	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		str, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "iss": Issuer, "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)

	cases := map[string]string{
		"changed payload": func() string {
			p := decodeSegment(t, good, 1)
			p["sub"] = "mallory"
			return parts[0] + "." + encodeSegment(t, p) + "." + parts[2]
		}(),
		"alg none": func() string {
			return sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(), k.Kid)
		}(),
		"alg none, signature stripped from a real token": func() string {
			h := decodeSegment(t, good, 0)
			h["alg"] = "none"
			return encodeSegment(t, h) + "." + parts[1] + "."
		}(),
		// The classic confusion attack: HMAC keyed with the public key bytes.
		"HS256 keyed with the public key": sign(jwt.SigningMethodHS256, []byte(pub), valid(), k.Kid),
		"RS256":                           sign(jwt.SigningMethodRS256, rsaKey, valid(), k.Kid),
		"unknown kid":                     sign(jwt.SigningMethodEdDSA, stranger, valid(), "no-such-kid"),
		"wrong key under the right kid":   sign(jwt.SigningMethodEdDSA, stranger, valid(), k.Kid),
		"no kid":                          sign(jwt.SigningMethodEdDSA, k.Private, valid(), ""),
		"past exp": func() string {
			c := valid()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"no exp": func() string {
			c := valid()
			delete(c, "exp")
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"wrong iss": func() string {
			c := valid()
			c["iss"] = "someone-else"
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"no iss": func() string {
			c := valid()
			delete(c, "iss")
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"no sub": func() string {
			c := valid()
			delete(c, "sub")
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"issued in the future": func() string {
			c := valid()
			c["iat"] = time.Now().Add(time.Hour).Unix()
			c["exp"] = time.Now().Add(2 * time.Hour).Unix()
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		"not valid before an hour from now": func() string {
			c := valid()
			c["nbf"] = time.Now().Add(time.Hour).Unix()
			return sign(jwt.SigningMethodEdDSA, k.Private, c, k.Kid)
		}(),
		// RFC 7515 §4.1.11: an extension named in crit that the recipient
		// does not understand makes the JWS invalid; none is understood
		// here (b64: false, RFC 7797, would sign the payload unencoded).
		"crit header": func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, valid())
			tok.Header["kid"] = k.Kid
			tok.Header["crit"] = []string{"b64"}
			tok.Header["b64"] = false
			str, err := tok.SignedString(k.Private)
			if err != nil {
				t.Fatal(err)
			}
			return str
		}(),
		"kid of 1 MiB": sign(jwt.SigningMethodEdDSA, stranger, valid(), strings.Repeat("k", 1<<20)),
		"garbage":      "not.a.jwt",
		"empty":        "",
		"two parts":    parts[0] + "." + parts[1],
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := v.Verify(context.Background(), tok); err == nil {
				t.Fatalf("accepted: %+v", c)
			}
		})
	}
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
}

func TestLeewayIsSmall(t *testing.T) {
	k := mustKey(t)
	s := NewSigner(k)
	tok, _ := s.Sign("u", time.Minute)
	at := func(d time.Duration) *Verifier {
		v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{Now: func() time.Time { return time.Now().Add(d) }})
		return v
	}
	if _, err := at(time.Minute+5*time.Second).Verify(context.Background(), tok); err != nil {
		t.Fatalf("5s past exp should be inside the leeway: %v", err)
	}
	if _, err := at(time.Minute+30*time.Second).Verify(context.Background(), tok); err == nil {
		t.Fatal("30s past exp accepted")
	}
}

// Unknown kids refetch the key set, but at most once per MinRefreshInterval
// however many forged tokens arrive.
func TestUnknownKidRefreshIsBounded(t *testing.T) {
	k := mustKey(t)
	var doc atomic.Pointer[[]byte]
	first := NewSigner(k).JWKS()
	doc.Store(&first)
	srv, fetches := jwksServer(t, func() []byte { return *doc.Load() })
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v := NewVerifier(srv.URL, VerifierOptions{
		MinRefreshInterval: time.Minute,
		Now:                func() time.Time { return time.Unix(0, clock.Load()) },
	})
	ctx := context.Background()
	tok, _ := NewSigner(k).Sign("u", time.Hour)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("fetches after first verify = %d, want 1", got)
	}
	forger := mustKey(t)
	forged, _ := NewSigner(forger).Sign("u", time.Hour)
	for range 50 {
		if _, err := v.Verify(ctx, forged); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey", err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("fetches within one interval = %d, want 1 (the first one)", got)
	}

	// The signer rotates; after the interval the new kid is picked up.
	next := mustKey(t)
	rotated := NewSigner(next, k).JWKS()
	doc.Store(&rotated)
	clock.Add(int64(2 * time.Minute))
	tok2, _ := NewSigner(next).Sign("u", time.Hour)
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatalf("new kid after interval: %v", err)
	}
	if got := fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

// A fetch that failed does not hold the next one off for a whole MinRefreshInterval: a token signed with a key rotated
// in just then used to be refused for up to 5 s. The retry comes after a short backoff; after a success the bound holds.
func TestFailedFetchIsRetriedSoon(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	var doc atomic.Pointer[[]byte]
	first := NewSigner(old).JWKS()
	doc.Store(&first)
	var fail atomic.Bool
	srv, fetches := jwksServer(t, func() []byte {
		if fail.CompareAndSwap(true, false) {
			return []byte("not a key set") // fails this once
		}
		return *doc.Load()
	})
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	v := NewVerifier(srv.URL, VerifierOptions{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	tok, _ := NewSigner(old).Sign("u", time.Hour)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}

	clock.Add(int64(v.opts.MinRefreshInterval)) // the next unknown kid may fetch
	rotated := NewSigner(next, old).JWKS()
	doc.Store(&rotated)
	fail.Store(true)
	tok2, _ := NewSigner(next).Sign("u", time.Hour)
	if _, err := v.Verify(ctx, tok2); !isKeySetError(err) {
		t.Fatalf("verify while the fetch fails: %v, want a KeySetError", err)
	}
	clock.Add(int64(time.Second)) // well inside MinRefreshInterval (5 s)
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatalf("a second after the failed fetch: %v", err)
	}
	if got := fetches.Load(); got != 3 {
		t.Fatalf("fetches = %d, want 3 (first, failed, retried)", got)
	}

	// The fetch succeeded: unknown kids within MinRefreshInterval fetch nothing.
	forged, _ := NewSigner(mustKey(t)).Sign("u", time.Hour)
	for range 10 {
		clock.Add(int64(100 * time.Millisecond))
		if _, err := v.Verify(ctx, forged); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("forged: %v, want ErrUnknownKey", err)
		}
	}
	if got := fetches.Load(); got != 3 {
		t.Fatalf("fetches after a flood of unknown kids = %d, want still 3", got)
	}
}

// While the key set cannot be fetched at all, the retries back off to MinRefreshInterval: an unknown-kid flood
// during a user-service outage asks it no more often than during normal running.
func TestFailingFetchBacksOffToTheBound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var clock atomic.Int64
	start := time.Now()
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	var attempts []time.Duration
	v := NewVerifier(srv.URL, VerifierOptions{Now: now})
	inner := v.fetch
	v.fetch = func(ctx context.Context) ([]byte, error) {
		attempts = append(attempts, now().Sub(start))
		return inner(ctx)
	}
	forged, _ := NewSigner(mustKey(t)).Sign("u", time.Hour)
	for range 600 { // a minute, a token every 100 ms
		// Throttled or not, while the fetch fails the kid cannot be looked up.
		if _, err := v.Verify(context.Background(), forged); !isKeySetError(err) {
			t.Fatalf("err = %v, want a KeySetError", err)
		}
		clock.Add(int64(100 * time.Millisecond))
	}
	for i := 1; i < len(attempts); i++ {
		if gap := attempts[i] - attempts[i-1]; gap < firstRetry || gap > v.opts.MinRefreshInterval+100*time.Millisecond {
			t.Fatalf("attempt %d came %v after the one before, want between %v and the bound %v: %v",
				i, gap, firstRetry, v.opts.MinRefreshInterval, attempts)
		}
	}
	last := attempts[len(attempts)-3:]
	if gap := last[2] - last[1]; gap < v.opts.MinRefreshInterval {
		t.Fatalf("after a minute of failures attempts are %v apart, want the bound %v: %v", gap, v.opts.MinRefreshInterval, attempts)
	}
}

// Callers waiting on a fetch that fails slowly (longer than the backoff) get its result, not a fetch each in turn
// (found by review: 8 callers, a 503 after 1.1 s, made 4 fetches and the last waited 4.4 s); and the backoff runs from
// when the failure ended, so a caller just after it does not fetch again either.
func TestSlowFailingFetchIsSharedByItsWaiters(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	arrived, release := make(chan struct{}), make(chan struct{})
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 1 {
			close(arrived)
			<-release
		}
		clock.Add(int64(1100 * time.Millisecond)) // slower than the backoff
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	v := NewVerifier(srv.URL, VerifierOptions{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	tok, _ := NewSigner(mustKey(t)).Sign("u", time.Hour)
	verify := func(errs chan<- error) { _, err := v.Verify(context.Background(), tok); errs <- err }

	const callers = 8
	errs := make(chan error, callers)
	go verify(errs)
	<-arrived
	for range callers - 1 {
		go verify(errs)
	}
	waitForFetchWaiters(t, callers-1)
	close(release)
	for range callers {
		// The fetch's own failure, not a throttled one: each waiter got the result of the fetch it waited for.
		if err := <-errs; !isKeySetError(err) || !strings.Contains(err.Error(), "status 503") {
			t.Errorf("err = %v, want a KeySetError with the fetch's 503", err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1 shared by the %d callers", got, callers)
	}

	clock.Add(int64(firstRetry / 2))
	if _, err := v.Verify(context.Background(), tok); !isKeySetError(err) {
		t.Fatalf("err = %v, want a KeySetError", err)
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d within the backoff after the slow failure ended, want still 1", got)
	}
	clock.Add(int64(firstRetry))
	_, _ = v.Verify(context.Background(), tok)
	if got := fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d once the backoff after the failure passed, want 2", got)
	}
}

// waitForFetchWaiters waits until n goroutines are blocked on the Verifier's mu in refresh, behind the fetch in
// flight.
func waitForFetchWaiters(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; {
		waiting := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, "/pkg/auth.(*Verifier).refresh(") {
				waiting++
			}
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callers waiting for the fetch after 10s", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A caller that gives up while the key set is being fetched (its client went away) does not make that fetch a failed
// attempt: the fetch serves the callers after it too, and a failure would have answered them ErrUnknownKey for a
// whole MinRefreshInterval.
func TestCallerGivingUpDoesNotThrottleTheKeySet(t *testing.T) {
	k := mustKey(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			close(arrived)
			<-release
		}
		_, _ = w.Write(NewSigner(k).JWKS())
	}))
	defer srv.Close()
	v := NewVerifier(srv.URL, VerifierOptions{MinRefreshInterval: time.Hour})
	tok, _ := NewSigner(k).Sign("u", time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := v.Verify(ctx, tok); done <- err }()
	<-arrived
	cancel()
	slow.Store(false)
	close(release)
	<-done // verified or not, what matters is the next caller
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("verify after a caller gave up mid-fetch: %v", err)
	}
}

func TestVerifierSurvivesJWKSOutage(t *testing.T) {
	k := mustKey(t)
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(NewSigner(k).JWKS())
	}))
	defer srv.Close()
	v := NewVerifier(srv.URL, VerifierOptions{})
	if err := v.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	tok, _ := NewSigner(k).Sign("u", time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("cached key should verify during an outage: %v", err)
	}
	v2 := NewVerifier(srv.URL, VerifierOptions{})
	if err := v2.Ready(context.Background()); err == nil {
		t.Fatal("Ready with the JWKS endpoint down should fail")
	}
}

// A key set over the cap is refused as too large, not parsed as the truncated JSON its first MiB is.
func TestOversizedJWKSIsNamed(t *testing.T) {
	k := mustKey(t)
	doc := NewSigner(k).JWKS()
	padded := append(append(doc[:len(doc)-1:len(doc)-1], bytes.Repeat([]byte(" "), 2<<20)...), '}')
	srv, _ := jwksServer(t, func() []byte { return padded })
	err := NewVerifier(srv.URL, VerifierOptions{}).Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Ready with a 2 MiB key set: %v, want an error saying it is too large", err)
	}
}

func TestMiddleware(t *testing.T) {
	gin.SetMode(gin.TestMode)
	k := mustKey(t)
	s := NewSigner(k)
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	r := gin.New()
	var before *http.Request
	r.GET("/me", func(c *gin.Context) { before = c.Request }, Middleware(v), func(c *gin.Context) {
		if c.Request != before {
			t.Error("Middleware copied the request; the subject rides in the gin context")
		}
		c.String(http.StatusOK, UserID(c))
	})
	tok, _ := s.Sign("alice", time.Minute)
	// Validly signed, but naming no one a service can store or look up: PostgreSQL's text refuses a NUL (the
	// services answered 500), and a control character or invalid UTF-8 is no user id the user service issues.
	bearer := func(sub string) map[string]string {
		tok, err := s.Sign(sub, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	expired, _ := func() (string, error) {
		old := NewSigner(k)
		old.now = func() time.Time { return time.Now().Add(-time.Hour) }
		return old.Sign("alice", time.Minute)
	}()

	cases := []struct {
		name   string
		header map[string]string
		status int
		body   string
	}{
		{"valid", map[string]string{"Authorization": "Bearer " + tok}, 200, "alice"},
		{"scheme is case-insensitive", map[string]string{"Authorization": "bearer " + tok}, 200, "alice"},
		{"matching X-User-ID", map[string]string{"Authorization": "Bearer " + tok, "X-User-ID": "alice"}, 200, "alice"},
		{"no header", nil, 401, ""},
		{"basic scheme", map[string]string{"Authorization": "Basic YWxpY2U6cHc="}, 401, ""},
		{"bearer without token", map[string]string{"Authorization": "Bearer "}, 401, ""},
		{"expired", map[string]string{"Authorization": "Bearer " + expired}, 401, ""},
		{"X-User-ID naming someone else", map[string]string{"Authorization": "Bearer " + tok, "X-User-ID": "bob"}, 401, ""},
		{"X-User-ID without a token", map[string]string{"X-User-ID": "alice"}, 401, ""},
		{"NUL in sub", bearer("alice\x00"), 401, ""},
		{"sub of a NUL", bearer("\x00"), 401, ""},
		{"newline in sub", bearer("alice\nbob"), 401, ""},
		{"DEL in sub", bearer("alice\x7f"), 401, ""},
		{"C1 control in sub", bearer("alice\u0085"), 401, ""},
		{"non-ASCII sub", bearer("李白 alice"), 200, "李白 alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/me", nil)
			for h, val := range tc.header {
				req.Header.Set(h, val)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tc.status, w.Body)
			}
			if tc.status == 200 {
				if w.Body.String() != tc.body {
					t.Fatalf("body = %q, want %q", w.Body, tc.body)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("content type = %q", ct)
			}
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate")
			}
			var p map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["status"] != float64(401) {
				t.Fatalf("problem body = %s (%v)", w.Body, err)
			}
		})
	}
}

func TestKeyConfig(t *testing.T) {
	k := mustKey(t)
	b64, err := MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	prev := mustKey(t)
	prevB64, _ := MarshalKey(prev)
	path := filepath.Join(t.TempDir(), "prev.key")
	if err := os.WriteFile(path, []byte(prevB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	keys, gen, err := KeyConfig{Current: b64, PreviousFile: path}.Keys()
	if err != nil || gen {
		t.Fatalf("keys: %v gen=%v", err, gen)
	}
	if len(keys) != 2 || keys[0].Kid != k.Kid || keys[1].Kid != prev.Kid {
		t.Fatalf("kids = %v", keys)
	}
	if !keys[0].Private.Equal(k.Private) {
		t.Fatal("current key differs after round trip")
	}

	if _, _, err := (KeyConfig{}).Keys(); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key, no opt-in: err = %v", err)
	}
	keys, gen, err = KeyConfig{DevKeys: true}.Keys()
	if err != nil || !gen || len(keys) != 1 {
		t.Fatalf("dev keys: %v gen=%v n=%d", err, gen, len(keys))
	}
	if _, _, err := (KeyConfig{Current: "bm90IGEga2V5"}).Keys(); err == nil {
		t.Fatal("garbage key accepted")
	}
	if _, _, err := (KeyConfig{CurrentFile: filepath.Join(t.TempDir(), "missing")}).Keys(); err == nil {
		t.Fatal("missing key file accepted")
	}
}

// BenchmarkVerify is a repeat of one token: "cached" is what a client's
// second and later requests cost, "uncached" every check without the cache
// (a token's first request).
func BenchmarkVerify(b *testing.B) {
	k := mustKey(b)
	s := NewSigner(k, mustKey(b))
	srv, _ := jwksServer(b, s.JWKS)
	tok, _ := s.Sign("0196b8a4-7f1e-7c3a-9d2b-5e6f7a8b9c0d", 15*time.Minute)
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		entries int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			v := NewVerifier(srv.URL, VerifierOptions{CacheEntries: bc.entries})
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkSign(b *testing.B) {
	s := NewSigner(mustKey(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("0196b8a4-7f1e-7c3a-9d2b-5e6f7a8b9c0d", 15*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Baseline is the signature check alone: the floor under
// BenchmarkVerify, whose difference is parsing and claim validation.
func BenchmarkEd25519Baseline(b *testing.B) {
	k := mustKey(b)
	tok, _ := NewSigner(k).Sign("0196b8a4-7f1e-7c3a-9d2b-5e6f7a8b9c0d", 15*time.Minute)
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	pub := k.Private.Public().(ed25519.PublicKey)
	msg := []byte(tok[:i])
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad signature")
		}
	}
}
