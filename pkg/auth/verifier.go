package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Claims are the verified facts of an access token.
type Claims struct {
	Subject   string
	Issuer    string
	ID        string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// VerifierOptions tune a Verifier; the zero value is the platform default.
type VerifierOptions struct {
	// Issuer is the required iss claim. Default Issuer.
	Issuer string
	// Leeway absorbs clock skew between signer and verifier. Default 10s:
	// enough for NTP-synced hosts, small next to a 15 minute token.
	Leeway time.Duration
	// MinRefreshInterval bounds how often an unknown kid may trigger a JWKS
	// fetch after a successful one. Default 5s. A failed fetch is retried
	// sooner (firstRetry, doubling with each failure in a row up to this).
	MinRefreshInterval time.Duration
	// MaxAge is how long a fetched key set is trusted before it is refreshed
	// in the background (so a withdrawn key stops verifying). Default 10m.
	MaxAge time.Duration
	// HTTPClient fetches the JWKS. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// CacheEntries bounds how many verified tokens are remembered (see
	// tokenCache). Default 16384, a few MiB at most; negative turns the cache
	// off.
	CacheEntries int
	// Now replaces the clock in tests.
	Now func() time.Time
}

// ErrUnknownKey means the token names a kid that the key set does not hold,
// even after a refresh (or while refreshes are being rate limited after one
// that succeeded): the token is bad.
var ErrUnknownKey = errors.New("unknown signing key")

// KeySetError is Verify's error for a token whose kid the held key set lacks
// when the key set could not be fetched to look it up (the fetch failed, or
// failed last and is not due again yet). Unlike ErrUnknownKey it says nothing
// about the token: the JWKS endpoint is the problem, so a server answers 503,
// not a 401 that would make a client drop a good token and log in again.
type KeySetError struct {
	Kid string
	// RetryAfter is how long until the key set may be fetched again.
	RetryAfter time.Duration
	// Err is the failed fetch's error.
	Err error
}

func (e *KeySetError) Error() string {
	return fmt.Sprintf("signing key %q: key set unavailable: %v", e.Kid, e.Err)
}

func (e *KeySetError) Unwrap() error { return e.Err }

// Verifier checks access tokens against a JWKS document it fetches and caches.
// It is safe for concurrent use; the hot path for a token seen before is one
// atomic load and two map lookups, else a parse and the Ed25519 check.
type Verifier struct {
	fetch  func(ctx context.Context) ([]byte, error)
	opts   VerifierOptions
	parser *jwt.Parser
	// claims is the parser's claim checks alone, for a token whose key is
	// not held (see unheldKey).
	claims *jwt.Validator
	cache  *tokenCache // nil when turned off

	keys atomic.Pointer[keySet]

	mu          sync.Mutex    // serialises fetches
	lastAttempt time.Time     // when the last fetch ended; guarded by mu
	lastErr     error         // the last fetch's outcome; guarded by mu
	failures    int           // fetches failed in a row; guarded by mu
	attempts    atomic.Uint64 // fetches ended; written with mu held, read before taking it
	refreshing  atomic.Bool
}

type keySet struct {
	byKid   map[string]ed25519.PublicKey
	fetched time.Time
}

// NewVerifier verifies against the JWKS served at jwksURL. Nothing is fetched
// until the first Verify (or Ready), so the caller may start before the user
// service does.
//
// Its errors, which /readyz logs and every request a failed fetch fails
// carries, name jwksURL as redact.URL shows it: it may hold a password or a
// token in its query (a proxy in front of the user service).
func NewVerifier(jwksURL string, o VerifierOptions) *Verifier {
	o = o.withDefaults()
	client := o.HTTPClient
	shown := redact.URL(jwksURL)
	return newVerifier(o, func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
		if err != nil {
			return nil, redact.Error("JWKS_URL", jwksURL, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			// net/http's *url.Error quotes the URL with only the password
			// of the user info it read hidden: the query stays, and so
			// does a password url.Parse misread as the host. Keep its
			// cause (a timeout stays a timeout) under the redacted URL.
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("GET %s: %w", shown, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d", shown, resp.StatusCode)
		}
		// A key set is a few hundred bytes; a cap keeps a broken or hostile
		// endpoint from filling memory. One byte over tells a document that
		// is too large from one that ends at the cap, which would otherwise
		// fail as truncated JSON.
		doc, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
		if err == nil && len(doc) > maxJWKSBytes {
			return nil, fmt.Errorf("GET %s: key set larger than %d bytes", shown, maxJWKSBytes)
		}
		return doc, err
	})
}

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// NewStaticVerifier verifies against a fixed JWKS document, for the signer's
// own process (which need not fetch its own keys over HTTP) and for tests.
func NewStaticVerifier(doc []byte, o VerifierOptions) (*Verifier, error) {
	o = o.withDefaults()
	v := newVerifier(o, func(context.Context) ([]byte, error) { return doc, nil })
	set, err := parseJWKS(doc)
	if err != nil {
		return nil, err
	}
	// A static set never goes stale.
	set.fetched = time.Unix(1<<40, 0)
	v.keys.Store(set)
	return v, nil
}

func newVerifier(o VerifierOptions, fetch func(context.Context) ([]byte, error)) *Verifier {
	v := &Verifier{fetch: fetch, opts: o}
	if o.CacheEntries > 0 {
		v.cache = newTokenCache(o.CacheEntries)
	}
	checks := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(o.Issuer),
		jwt.WithLeeway(o.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(o.Now),
	}
	v.parser = jwt.NewParser(append(checks,
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithStrictDecoding(),
	)...)
	v.claims = jwt.NewValidator(checks...)
	return v
}

func (o VerifierOptions) withDefaults() VerifierOptions {
	if o.Issuer == "" {
		o.Issuer = Issuer
	}
	if o.Leeway == 0 {
		o.Leeway = 10 * time.Second
	}
	if o.MinRefreshInterval == 0 {
		o.MinRefreshInterval = 5 * time.Second
	}
	if o.MaxAge == 0 {
		o.MaxAge = 10 * time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = 1 << 14
	}
	return o
}

// Verify checks the token's algorithm, signature, expiry and issuer and
// returns its claims. Any error means the caller must answer 401, except a
// *KeySetError (the key set could not be fetched): 503. A token that
// verified before is answered from the cache while it still would.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	return verify(v, ctx, token)
}

// VerifyBytes is Verify for a token in a buffer the caller reuses (the
// gateway reads it from fasthttp's header bytes): a cached token is found
// without copying it, so a hit allocates nothing; a miss copies it once, to
// parse it and to keep it as the cache key.
func (v *Verifier) VerifyBytes(ctx context.Context, token []byte) (Claims, error) {
	return verify(v, ctx, token)
}

func verify[T string | []byte](v *Verifier, ctx context.Context, token T) (Claims, error) {
	if c, ok := cached(v, token, v.opts.Now()); ok {
		return c, nil
	}
	return v.parse(ctx, string(token))
}

// CachedBytes answers from the verified-token cache alone, never parsing
// or fetching: ok false means VerifyBytes must verify the token, which may
// wait for the key set. The gateway's event loop asks this on the loop and
// hands a miss to a goroutine.
func (v *Verifier) CachedBytes(token []byte) (c Claims, ok bool) {
	return cached(v, token, v.opts.Now())
}

// CachedBytesAt is CachedBytes at a time the caller read already (the
// gateway reads the clock once per request for every step that needs it).
// An entry answers until exp plus the leeway, seconds at the least, so a
// reading taken microseconds earlier decides the same.
func (v *Verifier) CachedBytesAt(token []byte, now time.Time) (c Claims, ok bool) {
	return cached(v, token, now)
}

func cached[T string | []byte](v *Verifier, token T, now time.Time) (Claims, bool) {
	if v.cache == nil {
		return Claims{}, false
	}
	set := v.keys.Load()
	c, ok := cacheGet(v.cache, token, now, set)
	if ok {
		v.refreshIfOld(set, now)
	}
	return c, ok
}

// parse verifies a token the cache did not answer, and caches it on success.
func (v *Verifier) parse(ctx context.Context, token string) (Claims, error) {
	var (
		rc  jwt.RegisteredClaims
		kid string
		key ed25519.PublicKey
		set *keySet
	)
	_, err := v.parser.ParseWithClaims(token, &rc, func(t *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: a JWS naming in crit an extension the
		// recipient does not understand is invalid. golang-jwt ignores
		// crit, and none is understood here (b64: false, RFC 7797, would
		// have the payload signed unencoded): the signer never sets it.
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("token names critical header extensions (crit)")
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		if err := v.unheldKey(kid, &rc); err != nil {
			return nil, err
		}
		k, in, err := v.key(ctx, kid)
		key, set = k, in
		return k, err
	})
	if err != nil {
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	if rc.Subject == "" {
		return Claims{}, errors.New("verify token: no sub")
	}
	c := Claims{Subject: rc.Subject, Issuer: rc.Issuer, ID: rc.ID, ExpiresAt: rc.ExpiresAt.Time}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time
	}
	if v.cache != nil {
		v.cache.put(token, &cachedToken{claims: c, until: c.ExpiresAt.Add(v.opts.Leeway), kid: kid, key: key, set: set})
	}
	return c, nil
}

// unheldKey refuses a token whose kid the held key set lacks when its
// claims, read but not yet verified, would refuse it whatever key signed it
// (expired, not yet valid, another issuer, no sub). Such a token is the
// client's fault: during a JWKS outage looking its key up ended in a
// KeySetError, a 503 that told a client holding an expired token to retry
// the same token rather than log in again, and at any time it cost a fetch.
// The unverified claims only ever refuse: a token they pass still needs its
// key and the signature, so a forged token with plausible claims and an
// unheld kid is still a 503 during an outage (it cannot be told from a
// token of a key rotated in meanwhile).
func (v *Verifier) unheldKey(kid string, rc *jwt.RegisteredClaims) error {
	if set := v.keys.Load(); set != nil {
		if _, ok := set.byKid[kid]; ok {
			return nil
		}
	}
	if err := v.claims.Validate(rc); err != nil {
		return fmt.Errorf("key %q not held and the claims refuse the token: %w", kid, err)
	}
	if rc.Subject == "" {
		return fmt.Errorf("key %q not held and the token has no sub", kid)
	}
	return nil
}

// Ready fetches the key set if none is held yet; use it as a readiness probe
// so a gateway does not take traffic it would answer with 401.
func (v *Verifier) Ready(ctx context.Context) error {
	if v.keys.Load() != nil {
		return nil
	}
	_, err := v.refresh(ctx, true)
	return err
}

// key finds kid's key, refreshing the key set if it is unknown, and
// returns the set it was found in.
func (v *Verifier) key(ctx context.Context, kid string) (ed25519.PublicKey, *keySet, error) {
	set := v.keys.Load()
	if set != nil {
		if k, ok := set.byKid[kid]; ok {
			v.refreshIfOld(set, v.opts.Now())
			return k, set, nil
		}
	}
	if retry, err := v.refresh(ctx, false); err != nil && !errors.Is(err, errThrottled) {
		return nil, nil, &KeySetError{Kid: kid, RetryAfter: retry, Err: err}
	}
	if set = v.keys.Load(); set != nil {
		if k, ok := set.byKid[kid]; ok {
			return k, set, nil
		}
	}
	return nil, nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
}

var errThrottled = errors.New("jwks refresh throttled")

// firstRetry is how soon after a failed fetch ended it may be tried again;
// each further failure in a row doubles it, up to MinRefreshInterval.
const firstRetry = 250 * time.Millisecond

// fetchTimeout bounds one key set fetch, whoever started it.
const fetchTimeout = 10 * time.Second

// refresh fetches the key set unless one ended within retryAfter (force
// skips that bound, for Ready). Callers that lose the race wait for the
// winner and then reuse its result, whatever it took: a fetch that ended
// while they waited is as fresh as one they would make. Timing the backoff
// alone did not do that, since a failure slower than it had let each
// waiter in turn fetch again, serially (8 callers, a 503 after 1.1 s: the
// last waited 4.4 s).
//
// A refresh held off after a failed fetch returns that failure, not
// errThrottled: the key set is still unavailable, which the caller answers
// differently from a kid a good set lacks. retry is how long until the next
// fetch may start, for a failure's Retry-After.
func (v *Verifier) refresh(ctx context.Context, force bool) (retry time.Duration, err error) {
	seen := v.attempts.Load()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.attempts.Load() != seen {
		return v.untilNext(), v.lastErr
	}
	now := v.opts.Now()
	if !force && !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < v.retryAfter() {
		if v.lastErr != nil {
			return v.untilNext(), v.lastErr
		}
		return 0, errThrottled
	}
	err = v.fetchKeys(ctx, now)
	// The backoff runs from the attempt's end: counted from its start, a
	// failure slower than the backoff would let the next caller fetch at once.
	v.lastAttempt, v.lastErr = v.opts.Now(), err
	v.attempts.Add(1)
	if err != nil {
		v.failures++
	} else {
		v.failures = 0
	}
	return v.untilNext(), err
}

// untilNext is how long from now until the next fetch may start. Called
// with mu held.
func (v *Verifier) untilNext() time.Duration {
	return max(0, v.lastAttempt.Add(v.retryAfter()).Sub(v.opts.Now()))
}

// retryAfter is how long after the last attempt ended the next may start.
// After a success, MinRefreshInterval: a flood of unknown kids must not
// hammer the user service. After a failure, from firstRetry doubling up to
// that bound: a key rotated in just as one fetch failed (a restart, a
// dropped connection) was refused for the whole interval, while an outage
// is still asked only once per interval after a few tries. Called with mu
// held.
func (v *Verifier) retryAfter() time.Duration {
	if v.failures == 0 {
		return v.opts.MinRefreshInterval
	}
	return min(firstRetry<<min(v.failures-1, 16), v.opts.MinRefreshInterval)
}

// fetchKeys fetches, parses and stores the key set. Called with mu held.
func (v *Verifier) fetchKeys(ctx context.Context, now time.Time) error {
	// The fetch serves every caller waiting on the key set, not only this one: a caller giving up (its client went
	// away) must not make it a failed attempt that answers the others ErrUnknownKey until the retry. Bounded,
	// since an HTTPClient without a timeout would otherwise hold mu forever.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	doc, err := v.fetch(ctx)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	set, err := parseJWKS(doc)
	if err != nil {
		return err
	}
	set.fetched = now
	v.keys.Store(set)
	return nil
}

// refreshIfOld starts a background refresh of a key set older than MaxAge,
// so a withdrawn key stops verifying (cached tokens included) soon after.
func (v *Verifier) refreshIfOld(set *keySet, now time.Time) {
	if now.Sub(set.fetched) > v.opts.MaxAge {
		v.refreshInBackground()
	}
}

func (v *Verifier) refreshInBackground() {
	if !v.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer v.refreshing.Store(false)
		// On failure the old set stays: a short user-service outage must not
		// log everybody out.
		_, _ = v.refresh(context.Background(), false)
	}()
}

// parseJWKS keeps only Ed25519 signing keys; anything else in the document
// is ignored rather than trusted.
//
// A member named twice in one object (a second "keys", "Keys" beside "keys",
// two "x" or "kid" in one key) fails the fetch, by the platform's one rule
// for such JSON (pkg/jsonkey): encoding/json keeps the last copy and many
// readers (a caching proxy, an auditor's tool) the first, so a second "keys"
// appended on the way replaced the set this verifier trusted while a
// first-key-wins reader saw the genuine one. Two keys naming one kid fail it
// for the same reason: indexed by kid, the last one won, where a reader
// taking the first key with that kid saw the genuine one (the user service
// never publishes a kid twice: KeyConfig refuses two equal keys). Failing,
// it keeps a set already held, as a set with no usable key does.
func parseJWKS(doc []byte) (*keySet, error) {
	if path := jsonkey.Duplicate(doc, reflect.TypeFor[jwks]()); path != "" {
		return nil, fmt.Errorf("parse jwks: key %s appears twice", path)
	}
	var d jwks
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	// Every kid counts, not only the usable keys': which of two keys is
	// "the" key for a kid must not depend on which reader skips which.
	seen := make(map[string]bool, len(d.Keys))
	for _, k := range d.Keys {
		if k.Kid == "" {
			continue
		}
		if seen[k.Kid] {
			return nil, fmt.Errorf("parse jwks: kid %q appears twice", k.Kid)
		}
		seen[k.Kid] = true
	}
	set := &keySet{byKid: make(map[string]ed25519.PublicKey, len(d.Keys))}
	for _, k := range d.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if k.Alg != "" && k.Alg != "EdDSA" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		set.byKid[k.Kid] = ed25519.PublicKey(x)
	}
	if len(set.byKid) == 0 {
		// The user service always publishes its current key, so a set with
		// none (a proxy's {} while it restarts, a misconfigured JWKS_URL) is a
		// failed fetch: taken as a key set, it made Ready pass while every
		// token was refused, and a refresh dropped the good keys it held.
		return nil, fmt.Errorf("parse jwks: no Ed25519 signing key among %d keys", len(d.Keys))
	}
	return set, nil
}
