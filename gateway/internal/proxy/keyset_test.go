package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// keySetDown is an Authenticator whose JWKS fetch fails: pkg/auth cannot
// look any token's key up.
type keySetDown struct{}

func (keySetDown) Subject(context.Context, []byte) (string, error) {
	return "", &auth.KeySetError{Kid: "k1", RetryAfter: 1500 * time.Millisecond, Err: errors.New("fetch jwks: status 502")}
}

// A token whose key could not be looked up because the key set could not be
// fetched was answered 401 invalid-token, telling the client to drop a token
// that may be good. It is a 503 with Retry-After: the user service, not the
// token, is the problem. A public route still goes on anonymously.
func TestUnfetchableKeySetIsUnavailable(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: keySetDown{}}, up)
	ctx := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer eyJ.x.y\r\n\r\n")
	var prob struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(ctx.Response.Body(), &prob); err != nil {
		t.Fatalf("body %s: %v", ctx.Response.Body(), err)
	}
	if ctx.Response.StatusCode() != 503 || prob.Status != 503 || !strings.HasSuffix(prob.Type, "/auth-unavailable") {
		t.Fatalf("got %d %s, want 503 auth-unavailable", ctx.Response.StatusCode(), prob.Type)
	}
	if got := string(ctx.Response.Header.Peek("Retry-After")); got != "2" {
		t.Fatalf("Retry-After %q, want 2 (1.5 s rounded up)", got)
	}
	if string(ctx.Response.Header.ContentType()) != "application/problem+json" {
		t.Fatalf("content type %q", ctx.Response.Header.ContentType())
	}
	if up.hits.Load() != 0 {
		t.Fatalf("the request reached the upstream %d times", up.hits.Load())
	}
	ctx = serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer eyJ.x.y\r\n\r\n")
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("public route with an unverifiable token: %d %s, want 200", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
