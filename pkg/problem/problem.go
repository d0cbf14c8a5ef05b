// Package problem writes RFC 9457 "problem details" error responses from gin
// handlers, so every Shanhai endpoint fails the same way: a JSON body with
// media type application/problem+json, a status that matches the HTTP status,
// and, for bad input, the list of fields that were wrong.
//
// Clients therefore need one error parser for the whole platform, and a
// validation failure always says which field to fix instead of a bare 400.
package problem

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// ContentType is the media type RFC 9457 registers for JSON problem details.
const ContentType = "application/problem+json"

// Details is one problem document. Type defaults to "about:blank" (meaning
// "the status code says it all"), Title to the status text and Instance to the
// request path, so callers usually only fill Status and Detail.
type Details struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// FieldError names one bad input field, using the name the client sent (the
// JSON name, a query parameter or a header), and says what was expected.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Error lets a Details travel as a Go error between layers (a use case can
// return one and the HTTP port writes it unchanged).
func (d Details) Error() string {
	if d.Detail != "" {
		return d.Title + ": " + d.Detail
	}
	return d.Title
}

// New fills the defaults of a problem for status.
func New(status int, detail string, fields ...FieldError) Details {
	return Details{Status: status, Detail: detail, Errors: fields}.withDefaults("")
}

func (d Details) withDefaults(path string) Details {
	if d.Status == 0 {
		d.Status = http.StatusInternalServerError
	}
	if d.Type == "" {
		d.Type = "about:blank"
	}
	if d.Title == "" {
		d.Title = http.StatusText(d.Status)
	}
	if d.Instance == "" {
		d.Instance = path
	}
	return d
}

// Write sends d as application/problem+json and aborts the gin chain, so no
// later handler can append to the body.
func Write(c *gin.Context, d Details) {
	path := ""
	if c.Request != nil && c.Request.URL != nil {
		path = c.Request.URL.Path
	}
	d = d.withDefaults(path)
	c.Abort()
	c.Header("Content-Type", ContentType)
	c.Status(d.Status)
	if c.Request != nil && c.Request.Method == http.MethodHead {
		// No body, but the header is sent now: gin answers an unwritten
		// NoRoute/NoMethod response with its own text/plain one.
		c.Writer.WriteHeaderNow()
		return
	}
	// gin's JSON render would overwrite Content-Type with application/json;
	// encoding ourselves keeps the problem media type.
	if err := writeJSON(c.Writer, d); err != nil {
		_ = c.Error(err)
	}
}

// Abort is the short form of Write for the common case: a status, a
// human-readable detail and optionally the offending fields.
func Abort(c *gin.Context, status int, detail string, fields ...FieldError) {
	Write(c, Details{Status: status, Detail: detail, Errors: fields})
}

// Unavailable answers 503 with a Retry-After of retryAfter in whole seconds (rounded up, at least 1): the request
// failed because a dependency is down, not because of a bug, and a client may try again after that delay (RFC 9110
// §10.2.3). detail says which dependency, never why in internal terms.
func Unavailable(c *gin.Context, retryAfter time.Duration, detail string) {
	secs := (retryAfter + time.Second - 1) / time.Second
	c.Header("Retry-After", strconv.FormatInt(max(1, int64(secs)), 10))
	Abort(c, http.StatusServiceUnavailable, detail)
}
