// Package page is the cursor pagination every listing of the platform
// shares, so a client that pages one pages all: ?limit=N&cursor=C in, and
// next_cursor out. A cursor is the id of the last row a page held, base64url
// so clients treat it as opaque; the next page starts after that row.
package page

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// Params is what a request asked for; zero values mean "not given" (the use
// case picks its default size and starts from the first row).
type Params struct {
	Limit  int
	Cursor string // the id of the row the page starts after
}

// Query reads limit (an integer from 1 to maxLimit) and cursor (one Cursor
// returned) from c's query string. Each bad parameter is returned as a
// FieldError naming it, for the caller to add its own and answer 400 once.
// A parameter given more than once is bad too, as the order listing's
// status is: taking the first, as gin's Query does, would answer a page the
// client may not have meant without a word that the rest were dropped.
func Query(c *gin.Context, maxLimit int) (Params, []problem.FieldError) {
	var p Params
	var bad []problem.FieldError
	if s, ok := once(c, "limit"); !ok {
		bad = append(bad, problem.FieldError{Field: "limit", Detail: "must be given at most once"})
	} else if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			bad = append(bad, problem.FieldError{Field: "limit", Detail: "must be an integer from 1 to " + strconv.Itoa(maxLimit)})
		}
		p.Limit = n
	}
	if s, ok := once(c, "cursor"); !ok {
		bad = append(bad, problem.FieldError{Field: "cursor", Detail: "must be given at most once"})
	} else if s != "" {
		id, err := decode(s)
		if err != nil {
			bad = append(bad, problem.FieldError{Field: "cursor", Detail: "is not a cursor returned by this API"})
		}
		p.Cursor = id
	}
	return p, bad
}

// once is the query parameter name's value ("" when absent), and false when
// it is given more than once.
func once(c *gin.Context, name string) (string, bool) {
	vs := c.QueryArray(name)
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return "", false
}

// Cursor is the next_cursor of a page whose last row is id ("" when there
// is no next page).
func Cursor(id string) string {
	if id == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// decode accepts only what Cursor makes of a canonical UUID. Cursors are
// opaque so the paging scheme can change without breaking clients, and only
// the canonical form is one: repositories compare ids as text, so the
// upper-case, braced or urn:uuid: spellings uuid.Parse also takes would page
// from the wrong place.
func decode(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("decode cursor: %w", err)
	}
	id, err := uuid.Parse(string(b))
	if err != nil {
		return "", fmt.Errorf("decode cursor: %w", err)
	}
	if id.String() != string(b) {
		return "", errors.New("decode cursor: not a canonical id")
	}
	return string(b), nil
}
