package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"
	"github.com/go-playground/validator/v10"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// MaxBodyBytes is the body limit DecodeJSON applies; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// DecodeJSON strictly decodes the request body into dst (a pointer) and
// validates it with gin's `binding` tags. On any problem it writes the
// problem+json answer, naming the field by its JSON name, and returns false;
// the handler then just returns:
//
//   - wrong or missing Content-Type (not application/json or +json) → 415
//   - body over MaxBodyBytes → 413
//   - body still coming when Options.ReadTimeout passed → 408
//   - connection gone while the body was read → nothing sent: 499, or 503
//     when the server's own drain deadline cut it (see deadline.Abort)
//   - empty body, malformed JSON, unknown field, wrong type, data after the
//     JSON value, a key twice in one object → 400
//   - binding rule failed (required, min, oneof, ...) → 422
//
// Unknown fields are errors, not ignored: a client that misspells a field
// should hear about it rather than have it silently dropped.
func DecodeJSON(c *gin.Context, dst any) bool {
	return DecodeJSONLimit(c, dst, MaxBodyBytes)
}

// DecodeJSONLimit is DecodeJSON with a different body limit.
func DecodeJSONLimit(c *gin.Context, dst any, limit int64) bool {
	if !jsonContentType(c.GetHeader("Content-Type")) {
		problem.Abort(c, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	if c.Request.Body == nil {
		problem.Abort(c, http.StatusBadRequest, "request body is empty")
		return false
	}
	// The body is read whole (it is bounded by limit) because the duplicate
	// key check below walks it a second time.
	data, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		writeDecodeError(c, err, limit)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeDecodeError(c, err, limit)
		return false
	}
	// Exactly one JSON value: `{"a":1}{"a":2}` or `{"a":1} x` is a client
	// bug, and accepting the first value would hide it.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		problem.Abort(c, http.StatusBadRequest, "unexpected data after the JSON value")
		return false
	}
	// A body with "email" twice means one thing here (encoding/json keeps the
	// last, matching keys case-folded into t's fields) and another to anything
	// that read it on the way and kept the first: refused, as every JSON the
	// platform reads is (jsonkey.Duplicate).
	if path := jsonkey.Duplicate(data, reflect.TypeOf(dst)); path != "" {
		problem.Abort(c, http.StatusBadRequest, "a field appears more than once",
			problem.FieldError{Field: cutPath(path), Detail: "appears more than once in its object"})
		return false
	}
	useJSONNames()
	if err := binding.Validator.ValidateStruct(dst); err != nil {
		fields := validationFields(err)
		if len(fields) == 0 {
			fields = []problem.FieldError{{Field: "body", Detail: err.Error()}}
		}
		problem.Abort(c, http.StatusUnprocessableEntity, "the request failed validation", fields...)
		return false
	}
	return true
}

func jsonContentType(h string) bool {
	if h == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(h)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func writeDecodeError(c *gin.Context, err error, limit int64) {
	var (
		tooBig  *http.MaxBytesError
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		problem.Abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Options.ReadTimeout passed with the body still coming; net/http
		// closes the connection after this answer.
		problem.Abort(c, http.StatusRequestTimeout, "the request body was not received in time")
	case c.Request.Context().Err() != nil:
		// The connection ended while the body was read: net/http ends the
		// request's context as the read fails. No answer can reach anyone,
		// and a 400 put the client's leaving, or this server's shutdown
		// closing the connection at the drain deadline, on the client's
		// request. deadline.Abort sets 499 without sending it, which the
		// access log turns into the drain's 503 when the shutdown cut it.
		deadline.Abort(c, c.Request.Context().Err())
	case errors.Is(err, io.EOF):
		problem.Abort(c, http.StatusBadRequest, "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		problem.Abort(c, http.StatusBadRequest, "request body is truncated JSON")
	case errors.As(err, &syntax):
		problem.Abort(c, http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		problem.Abort(c, http.StatusBadRequest, "a field has the wrong type",
			problem.FieldError{Field: field, Detail: fmt.Sprintf("must be %s, not %s", jsonKind(typeErr.Type), typeErr.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json reports unknown fields only as text.
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		problem.Abort(c, http.StatusBadRequest, "unknown field",
			problem.FieldError{Field: name, Detail: "is not a known field"})
	default:
		problem.Abort(c, http.StatusBadRequest, "request body could not be decoded: "+err.Error())
	}
}

// jsonKind names a Go type the way the client sees it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}

var jsonNames sync.Once

// useJSONNames makes gin's validator (a process-wide singleton) report JSON
// field names instead of Go ones, so 422 answers name what the client sent.
// It changes the names for every user of binding in the process, which is
// what every Shanhai binary wants.
func useJSONNames() {
	jsonNames.Do(func() {
		v, ok := binding.Validator.Engine().(*validator.Validate)
		if !ok {
			return
		}
		v.RegisterTagNameFunc(func(f reflect.StructField) string {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch name {
			case "-":
				return ""
			case "":
				return f.Name
			}
			return name
		})
	})
}

func validationFields(err error) []problem.FieldError {
	var out []problem.FieldError
	var slice binding.SliceValidationError
	if errors.As(err, &slice) {
		for _, e := range slice {
			out = append(out, validationFields(e)...)
		}
		return out
	}
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		return nil
	}
	for _, fe := range ves {
		out = append(out, problem.FieldError{Field: fieldPath(fe.Namespace()), Detail: ruleText(fe)})
	}
	return out
}

// fieldPath drops the Go struct name that leads the validator's namespace:
// "CreateOrder.items[0].sku" → "items[0].sku".
func fieldPath(ns string) string {
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return ns
}

func ruleText(fe validator.FieldError) string {
	p := fe.Param()
	unit := ""
	switch fe.Kind() {
	case reflect.String:
		unit = " characters"
	case reflect.Slice, reflect.Array, reflect.Map:
		unit = " items"
	}
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min", "gte":
		return "must be at least " + p + unit
	case "max", "lte":
		return "must be at most " + p + unit
	case "gt":
		return "must be more than " + p + unit
	case "lt":
		return "must be less than " + p + unit
	case "len":
		return "must be exactly " + p + unit
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(p, " ", ", ")
	case "email":
		return "must be an email address"
	case "url", "uri", "http_url":
		return "must be a URL"
	case "uuid", "uuid4":
		return "must be a UUID"
	case "iso4217":
		return "must be an ISO 4217 currency code"
	case "alphanum":
		return "must contain only letters and digits"
	case "dive":
		return "has an invalid item"
	}
	if p != "" {
		return fmt.Sprintf("must satisfy %s=%s", fe.Tag(), p)
	}
	return "must satisfy " + fe.Tag()
}

// maxQuotedPath bounds the path a problem quotes back: a key may be as long
// as the body limit allows, and the whole of it went back to the client and
// into every log that records problems.
const maxQuotedPath = 80

// cutPath is path cut to maxQuotedPath bytes, at a rune boundary, marked with
// an ellipsis when cut.
func cutPath(path string) string {
	if len(path) <= maxQuotedPath {
		return path
	}
	cut := maxQuotedPath
	for cut > 0 && !utf8.RuneStart(path[cut]) {
		cut--
	}
	return path[:cut] + "…"
}
