package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

func isKeySetError(err error) bool {
	var ke *KeySetError
	return errors.As(err, &ke)
}

// A kid the held key set lacks is looked up by fetching the set again. When
// that fetch fails, nothing is known about the token: it was answered 401,
// so a client with a good token signed by a key rotated in during a user
// service outage dropped it and logged in again (into the same outage).
// It is a KeySetError, answered 503 with Retry-After, until a fetch
// succeeds; a kid a fetched set really lacks stays ErrUnknownKey, a 401.
func TestUnfetchableKeySetIsNotABadToken(t *testing.T) {
	gin.SetMode(gin.TestMode)
	old, next := mustKey(t), mustKey(t)
	var down atomic.Bool
	srv, _ := jwksServer(t, func() []byte {
		if down.Load() {
			return []byte("<html>502 Bad Gateway</html>") // a proxy's page while the user service is away
		}
		return NewSigner(old).JWKS()
	})
	clk := newClock()
	v := NewVerifier(srv.URL, clk.opts())
	r := gin.New()
	r.GET("/me", Middleware(v), func(c *gin.Context) { c.String(http.StatusOK, UserID(c)) })
	call := func(tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}
	wantProblem := func(w *httptest.ResponseRecorder, status int, retryAfter string) {
		t.Helper()
		if w.Code != status {
			t.Fatalf("status = %d, want %d (%s)", w.Code, status, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("content type = %q", ct)
		}
		var p map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["status"] != float64(status) {
			t.Fatalf("problem body = %s (%v)", w.Body, err)
		}
		if got := w.Header().Get("Retry-After"); got != retryAfter {
			t.Fatalf("Retry-After = %q, want %q", got, retryAfter)
		}
	}

	oldTok, _ := NewSigner(old).Sign("alice", time.Hour)
	nextTok, _ := NewSigner(next).Sign("alice", time.Hour)
	if w := call(oldTok); w.Code != http.StatusOK {
		t.Fatalf("token of the published key: %d %s", w.Code, w.Body)
	}
	// The set was fetched: a kid it lacks is unknown, within the refresh bound or after it.
	wantProblem(call(nextTok), http.StatusUnauthorized, "")
	clk.add(v.opts.MinRefreshInterval)
	wantProblem(call(nextTok), http.StatusUnauthorized, "")

	down.Store(true)
	clk.add(v.opts.MinRefreshInterval)
	_, err := v.Verify(context.Background(), nextTok)
	var ke *KeySetError
	if !errors.As(err, &ke) || errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "parse jwks") {
		t.Fatalf("kid looked up while the fetch fails: %v, want a KeySetError with the fetch's failure", err)
	}
	if ke.RetryAfter != firstRetry {
		t.Fatalf("RetryAfter = %v after the first failure, want %v", ke.RetryAfter, firstRetry)
	}
	// Held off after the failure, the lookup is still not done: still the server's fault, still 503.
	wantProblem(call(nextTok), http.StatusServiceUnavailable, "1")
	if w := call(oldTok); w.Code != http.StatusOK {
		t.Fatalf("token of a held key during the outage: %d %s", w.Code, w.Body)
	}
	clk.add(firstRetry)
	wantProblem(call(nextTok), http.StatusServiceUnavailable, "1")

	// Back up: the same kid, looked up in a fetched set, is unknown again.
	down.Store(false)
	clk.add(v.opts.MinRefreshInterval)
	wantProblem(call(nextTok), http.StatusUnauthorized, "")
	if _, err := v.Verify(context.Background(), nextTok); !errors.Is(err, ErrUnknownKey) || isKeySetError(err) {
		t.Fatalf("kid a fetched set lacks: %v, want ErrUnknownKey", err)
	}
}

// Middleware over a cached token allocates no more than a stand-in that
// only verifies it and sets the user. Two allocations per request were its
// own: the *KeySetError errors.As fills, declared for every request
// (a12c116) and moved to the heap, and Header.Values canonicalising
// "X-User-ID" into a new string each time.
func TestMiddlewareAllocatesNothingForAGoodToken(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	gin.SetMode(gin.TestMode)
	s := NewSigner(mustKey(t))
	v, err := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign("alice", time.Hour)
	allocs := func(mw gin.HandlerFunc) float64 {
		r := gin.New()
		r.GET("/me", mw, func(c *gin.Context) { c.Status(http.StatusNoContent) })
		req := httptest.NewRequest(http.MethodGet, "/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req) // verifies and caches the token
		if w.Code != http.StatusNoContent {
			t.Fatalf("status = %d (%s)", w.Code, w.Body)
		}
		return testing.AllocsPerRun(200, func() { r.ServeHTTP(w, req) })
	}
	standIn := allocs(func(c *gin.Context) {
		claims, err := v.Verify(c.Request.Context(), strings.TrimPrefix(c.GetHeader("Authorization"), "Bearer "))
		if err != nil {
			t.Error(err)
		}
		c.Set(userKey, claims.Subject)
	})
	if got := allocs(Middleware(v)); got > standIn {
		t.Fatalf("Middleware: %.1f allocations per request, the stand-in %.1f", got, standIn)
	}
}

// A flood of tokens with forged kids during a user-service outage is
// answered KeySetError (503) and asks the JWKS endpoint no more often than
// the backoff allows, while tokens of a held key go on verifying: even one
// never seen before (no cache entry) needs no fetch. Otherwise an attacker
// could turn an outage into 503s for everybody.
func TestForgedKidFloodDuringAnOutageLeavesHeldKeysAlone(t *testing.T) {
	held := NewSigner(mustKey(t))
	clk := newClock()
	v, fetches := verifierInAnOutage(t, held, clk)
	ctx := context.Background()
	before := fetches.Load()
	for i := range 600 { // a minute, a forged and a good token every 100 ms
		forged, _ := NewSigner(mustKey(t)).Sign("mallory", time.Hour)
		if _, err := v.Verify(ctx, forged); !isKeySetError(err) {
			t.Fatalf("forged kid during the outage: %v, want a KeySetError", err)
		}
		sub := fmt.Sprintf("user-%d", i)
		good, _ := held.Sign(sub, time.Hour)
		if c, err := v.Verify(ctx, good); err != nil || c.Subject != sub {
			t.Fatalf("a new token of the held key during the flood: %+v, %v", c, err)
		}
		clk.add(100 * time.Millisecond)
	}
	// A few quick retries, then one per MinRefreshInterval.
	if got, bound := fetches.Load()-before, int64(time.Minute/v.opts.MinRefreshInterval)+5; got > bound {
		t.Fatalf("%d fetches in a minute of forged kids, want at most %d", got, bound)
	}
}

// A token whose kid the held set lacks but whose claims refuse it anyway
// (expired, another issuer) is the client's fault, outage or not: it was a
// KeySetError during a JWKS outage, a 503 telling the client to retry the
// same expired token instead of logging in again. It is refused (401) from
// its unverified claims without a fetch; a token with plausible claims and
// an unheld kid still needs the key (a 503 while it cannot be fetched).
func TestUnheldKidWithRefusedClaimsIsABadToken(t *testing.T) {
	held, next := NewSigner(mustKey(t)), NewSigner(mustKey(t))
	clk := newClock()
	next.now = clk.now
	v, fetches := verifierInAnOutage(t, held, clk)
	ctx := context.Background()

	expired, _ := next.Sign("alice", time.Minute)
	clk.add(time.Minute + v.opts.Leeway)
	claims := func(iss, sub string) string {
		now := clk.now()
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
			Issuer: iss, Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		})
		tok.Header["kid"] = next.Kid()
		str, err := tok.SignedString(next.current.Private)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	before := fetches.Load()
	for name, tok := range map[string]string{"expired": expired, "other issuer": claims("someone-else", "alice"), "no sub": claims(Issuer, "")} {
		_, err := v.Verify(ctx, tok)
		if err == nil || isKeySetError(err) {
			t.Errorf("%s token with an unheld kid during the outage: %v, want a plain refusal (401)", name, err)
		}
	}
	if got := fetches.Load() - before; got != 0 {
		t.Errorf("%d fetches for tokens the claims refuse, want 0", got)
	}
	plausible, _ := next.Sign("alice", time.Hour)
	if _, err := v.Verify(ctx, plausible); !isKeySetError(err) {
		t.Fatalf("plausible token with an unheld kid during the outage: %v, want a KeySetError (503)", err)
	}
}

// verifierInAnOutage is a verifier on clk that fetched held's key set, whose
// JWKS endpoint then answers a proxy's error page, MinRefreshInterval later:
// within it of that good fetch a kid the set lacks is simply unknown
// (ErrUnknownKey); the outage shows from the next fetch on. fetches counts
// the endpoint's requests.
func verifierInAnOutage(t *testing.T, held *Signer, clk *clock) (v *Verifier, fetches *atomic.Int64) {
	t.Helper()
	var down atomic.Bool
	srv, fetches := jwksServer(t, func() []byte {
		if down.Load() {
			return []byte("<html>502 Bad Gateway</html>")
		}
		return held.JWKS()
	})
	v = NewVerifier(srv.URL, clk.opts())
	if err := v.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	clk.add(v.opts.MinRefreshInterval)
	return v, fetches
}
