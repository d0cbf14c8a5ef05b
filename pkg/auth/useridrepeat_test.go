package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// X-User-ID given more than once is refused unless every value is the
// token's sub: Middleware read only the first, so a request carrying the
// caller's own id and then someone else's (or an empty one first) passed,
// with the other id left for whatever reads the header after it.
func TestMiddlewareRepeatedUserID(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := NewSigner(mustKey(t))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	r := gin.New()
	r.GET("/me", Middleware(v), func(c *gin.Context) { c.String(http.StatusOK, UserID(c)) })
	tok, err := s.Sign("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		values []string
		status int
	}{
		{[]string{"alice", "alice"}, http.StatusOK},
		{[]string{"alice", "bob"}, http.StatusUnauthorized},
		{[]string{"", "bob"}, http.StatusUnauthorized},
		{[]string{"bob", "alice"}, http.StatusUnauthorized},
	} {
		req := httptest.NewRequest(http.MethodGet, "/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, val := range tc.values {
			req.Header.Add(UserIDHeader, val)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("X-User-ID %q: status %d, want %d", tc.values, w.Code, tc.status)
		}
	}
}
