package auth

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// UserIDHeader is the header the gateway sets to the verified sub. Services
// accept it only when it agrees with the token they verify themselves.
const UserIDHeader = "X-User-ID"

const userKey = "shanhai.auth.user_id"

type ctxKey struct{}

// Middleware requires a valid "Authorization: Bearer <jwt>" and answers 401
// problem+json otherwise. A request that carries X-User-ID naming someone
// other than the token's sub is refused too: reaching a service directly must
// not give more power than going through the gateway.
func Middleware(v *Verifier) gin.HandlerFunc {
	return func(c *gin.Context) {
		raw := c.GetHeader("Authorization")
		scheme, token, ok := strings.Cut(raw, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			c.Header("WWW-Authenticate", `Bearer realm="shanhai"`)
			unauthorized(c, "a bearer access token is required")
			return
		}
		claims, err := v.Verify(c.Request.Context(), strings.TrimSpace(token))
		if err != nil {
			c.Header("WWW-Authenticate", `Bearer realm="shanhai", error="invalid_token"`)
			unauthorized(c, "the access token is invalid or expired")
			return
		}
		if h := c.GetHeader(UserIDHeader); h != "" && h != claims.Subject {
			c.Header("WWW-Authenticate", `Bearer realm="shanhai", error="invalid_token"`)
			unauthorized(c, "X-User-ID does not match the access token")
			return
		}
		c.Set(userKey, claims.Subject)
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), ctxKey{}, claims))
		c.Next()
	}
}

// UserID is the verified subject set by Middleware, or "" on a route that
// does not use it.
func UserID(c *gin.Context) string { return c.GetString(userKey) }

// FromContext returns the verified claims Middleware put in the request
// context, for code below the HTTP layer.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(Claims)
	return c, ok
}

func unauthorized(c *gin.Context, detail string) {
	problem.Abort(c, http.StatusUnauthorized, detail)
}
