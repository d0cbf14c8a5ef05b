// Package ports is the user service's HTTP face: gin handlers that decode
// and check requests, call the use cases, and map domain errors to status
// codes and problem+json. No business rule lives here.
package ports

import (
	_ "embed"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// OpenAPI is the service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// HTTP holds what the handlers need.
type HTTP struct {
	App      app.Application
	JWKS     []byte
	Verifier *auth.Verifier
	Logger   *slog.Logger
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// the login and sign-up limits count (clientIP); none, every client is
	// its peer.
	TrustedProxies []netip.Prefix
}

// Mount registers the routes on r.
func (h HTTP) Mount(r gin.IRouter) {
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
	r.GET("/.well-known/jwks.json", h.jwks)

	v1 := r.Group("/api/v1")
	v1.POST("/users", h.register)
	v1.POST("/sessions", h.login)
	v1.POST("/sessions/refresh", h.refresh)
	v1.DELETE("/sessions", h.logout)

	// The profile is personal data: no answer to its owner, a problem
	// included, is kept by a cache (server.NoStore, as for the orders). The
	// 401 of a request without a valid token holds nothing of anyone's.
	me := v1.Group("/users/me", auth.Middleware(h.Verifier), server.NoStore)
	me.GET("", h.getMe)
	me.PATCH("", h.patchMe)
	me.POST("/password", h.changePassword)
}

type registerRequest struct {
	Email    string `json:"email" binding:"required"`
	Password string `json:"password" binding:"required"`
	Name     string `json:"name" binding:"required"`
}

type profileResponse struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toProfile(p user.Profile) profileResponse {
	return profileResponse{ID: p.ID, Email: p.Email, Name: p.Name, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func (h HTTP) register(c *gin.Context) {
	var req registerRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	p, err := h.App.Register.Handle(c.Request.Context(), app.Register{Email: req.Email, Password: req.Password, Name: req.Name, IP: clientIP(c, h.TrustedProxies)})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/users/me")
	c.JSON(http.StatusCreated, toProfile(p))
}

type loginRequest struct {
	Email    string `json:"email" binding:"required"`
	Password string `json:"password" binding:"required"`
}

// tokenResponse follows OAuth 2.0's token response names (RFC 6749 §5.1),
// so generic clients understand it.
type tokenResponse struct {
	UserID           string `json:"user_id"`
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
}

func (h HTTP) writeTokens(c *gin.Context, status int, t app.Tokens) {
	// Tokens must not sit in any cache on the way (RFC 6749 §5.1).
	c.Header("Cache-Control", "no-store")
	now := time.Now()
	c.JSON(status, tokenResponse{
		UserID:           t.UserID,
		AccessToken:      t.AccessToken,
		TokenType:        "Bearer",
		ExpiresIn:        int(t.AccessExpiresAt.Sub(now).Round(time.Second).Seconds()),
		RefreshToken:     t.RefreshToken,
		RefreshExpiresIn: int(t.RefreshExpiresAt.Sub(now).Round(time.Second).Seconds()),
	})
}

func (h HTTP) login(c *gin.Context) {
	var req loginRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	t, err := h.App.Login.Handle(c.Request.Context(), app.Login{Email: req.Email, Password: req.Password, IP: clientIP(c, h.TrustedProxies)})
	if err != nil {
		h.fail(c, err)
		return
	}
	h.writeTokens(c, http.StatusCreated, t)
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token" binding:"required,max=512"`
}

func (h HTTP) refresh(c *gin.Context) {
	var req refreshRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	t, err := h.App.Refresh.Handle(c.Request.Context(), req.RefreshToken)
	if err != nil {
		h.fail(c, err)
		return
	}
	h.writeTokens(c, http.StatusOK, t)
}

func (h HTTP) logout(c *gin.Context) {
	var req refreshRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	if err := h.App.Logout.Handle(c.Request.Context(), req.RefreshToken); err != nil {
		h.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h HTTP) jwks(c *gin.Context) {
	// Verifiers refetch on an unknown kid anyway; a short max-age keeps a
	// rotation visible within minutes.
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/jwk-set+json", h.JWKS)
}

func (h HTTP) getMe(c *gin.Context) {
	p, err := h.App.GetProfile.Handle(c.Request.Context(), auth.UserID(c))
	if err != nil {
		h.fail(c, err)
		return
	}
	// No-store (the group's server.NoStore), not "private, no-cache": with no
	// validator to revalidate a stored copy with, that only left it on the
	// client's disk after logout.
	c.JSON(http.StatusOK, toProfile(p))
}

type patchMeRequest struct {
	Name *string `json:"name"`
}

func (h HTTP) patchMe(c *gin.Context) {
	var req patchMeRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	p, err := h.App.UpdateProfile.Handle(c.Request.Context(), auth.UserID(c), app.UpdateProfile{Name: req.Name})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, toProfile(p))
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password" binding:"required"`
	NewPassword     string `json:"new_password" binding:"required"`
}

// changePassword answers 204: every session of the account has ended with
// the old password, this client's too, so it logs in again with the new one.
func (h HTTP) changePassword(c *gin.Context) {
	var req changePasswordRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	err := h.App.ChangePassword.Handle(c.Request.Context(), app.ChangePassword{
		UserID: auth.UserID(c), Current: req.CurrentPassword, New: req.NewPassword, IP: clientIP(c, h.TrustedProxies),
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// fail maps use-case errors to answers. Anything unrecognised is a 500 whose
// detail says nothing; the error is logged (errors in this service never
// carry a password or a hash, only ids).
func (h HTTP) fail(c *gin.Context, err error) {
	// Work a context ended: 504 when the caller's deadline passed (not this
	// upstream's failure), else 503; never a 500.
	if deadline.Abort(c, err) {
		return
	}
	var verr *user.ValidationError
	var tooMany *app.TooManyAttemptsError
	switch {
	case errors.As(err, &verr):
		fields := make([]problem.FieldError, len(verr.Fields))
		for i, f := range verr.Fields {
			fields[i] = problem.FieldError{Field: f.Field, Detail: f.Detail}
		}
		problem.Abort(c, http.StatusUnprocessableEntity, "the request has invalid fields", fields...)
	case errors.Is(err, user.ErrEmailTaken):
		problem.Abort(c, http.StatusConflict, "an account with this email already exists",
			problem.FieldError{Field: "email", Detail: "is already registered"})
	case errors.Is(err, app.ErrWrongPassword):
		problem.Abort(c, http.StatusForbidden, "the current password is wrong",
			problem.FieldError{Field: "current_password", Detail: "is not the account's password"})
	case errors.Is(err, user.ErrHashChanged):
		// Another change (or a login's rehash) committed while this one
		// hashed; this one stored nothing, and a retry decides.
		problem.Abort(c, http.StatusConflict, "the password changed while this change was made: try again")
	case errors.Is(err, app.ErrBadCredentials):
		problem.Abort(c, http.StatusUnauthorized, "email or password is wrong")
	case errors.As(err, &tooMany):
		c.Header("Retry-After", strconv.Itoa(max(1, seconds(tooMany.RetryAfter))))
		if p := tooMany.Policy; p != "" {
			// The IETF draft's structured-field form, as pkg/limit.Middleware
			// writes it for the gateway's limits, so a client reads one way
			// which quota it hit and when it is full again.
			q := strconv.Quote(p)
			policy := q + ";q=" + strconv.Itoa(tooMany.Limit)
			if tooMany.Window > 0 {
				policy += ";w=" + strconv.Itoa(seconds(tooMany.Window))
			}
			c.Header("RateLimit-Policy", policy)
			c.Header("RateLimit", q+";r=0;t="+strconv.Itoa(seconds(tooMany.ResetAfter)))
		}
		problem.Abort(c, http.StatusTooManyRequests, "too many "+tooMany.What+"; try again later")
	case errors.Is(err, session.ErrInvalid):
		problem.Abort(c, http.StatusUnauthorized, "the refresh token is invalid, expired or revoked")
	case errors.Is(err, user.ErrNotFound):
		problem.Abort(c, http.StatusNotFound, "the account no longer exists")
	case database.Unavailable(err):
		// An outage of the database, not a bug: the client may retry.
		h.Logger.WarnContext(c.Request.Context(), "database unavailable", "route", c.FullPath(), "error", err.Error())
		problem.Unavailable(c, database.RetryAfter, "the database is unavailable; try again shortly")
	default:
		h.Logger.ErrorContext(c.Request.Context(), "request failed", "route", c.FullPath(), "error", err.Error())
		problem.Abort(c, http.StatusInternalServerError, "internal error")
	}
}

// seconds rounds up, as pkg/limit does: a client told to come back too early
// only earns another 429.
func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
