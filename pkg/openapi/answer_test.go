package openapi

import (
	"net/http"
	"strings"
	"testing"
)

const answersDoc = `{"openapi":"3.1.0",
"paths":{"/api/v1/orders/{id}":{"get":{"responses":{
  "200":{},
  "503":{"$ref":"#/components/responses/Unavailable"},
  "504":{"headers":{}},
  "500":{"headers":{"Retry-After":{}}}}}}},
"components":{"responses":{"Unavailable":{"headers":{"Retry-After":{"schema":{"type":"integer"}}}}}}}`

func TestAnswersCheck(t *testing.T) {
	a, err := ParseAnswers([]byte(answersDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method string
		status int
		h      http.Header
		want   string // substring of the error; empty means none
	}{
		{"listed through a shared response, with its header", "GET", 503, problemHeader("1"), ""},
		{"listed inline, with its header", "GET", 500, problemHeader("1"), ""},
		{"listed, no header sent", "GET", 504, problemHeader(""), ""},
		{"header the response does not list", "GET", 504, problemHeader("1"), "GET /api/v1/orders/{id} answers 504 with Retry-After, which its document does not list"},
		{"status not listed", "GET", 502, problemHeader(""), "answers 502, which its document does not list"},
		{"method not documented", "DELETE", 503, problemHeader(""), "DELETE /api/v1/orders/{id} answers 503, which"},
		{"error not problem+json", "GET", 503, http.Header{"Content-Type": {"text/plain"}}, `as "text/plain", not problem+json`},
		{"success needs no problem", "GET", 200, http.Header{"Content-Type": {"application/json"}}, ""},
	} {
		err := a.Check(tc.method, "/api/v1/orders/{id}", tc.status, tc.h)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseAnswers([]byte(`{`)); err == nil {
		t.Error("ParseAnswers of a broken document: no error")
	}
}

// OpenAPI 3 lets a document cover answers with a range ("4XX") or "default",
// and a status's own entry takes precedence over its range, which takes
// precedence over default. Check read the status's own entry only, so an
// answer covered by either was reported as undocumented.
func TestAnswersCheckRangesAndDefault(t *testing.T) {
	a, err := ParseAnswers([]byte(`{"openapi":"3.1.0",
"paths":{
 "/api/v1/orders":{"post":{"responses":{
  "201":{},
  "409":{},
  "4XX":{"$ref":"#/components/responses/Problem"},
  "503":{"headers":{"Retry-After":{}}},
  "default":{"headers":{"Retry-After":{}}}}}},
 "/api/v1/products":{"get":{"responses":{
  "200":{},
  "5XX":{"headers":{"Retry-After":{}}},
  "4xx":{}}}}},
"components":{"responses":{"Problem":{}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		op     string // "METHOD path"
		status int
		h      http.Header
		want   string
	}{
		{"a 4xx under 4XX", "POST /api/v1/orders", 422, problemHeader(""), ""},
		{"the code's own entry before its range", "POST /api/v1/orders", 409, problemHeader(""), ""},
		{"4XX lists no Retry-After, default's does not count", "POST /api/v1/orders", 429, problemHeader("1"),
			`answers 429 with Retry-After, which its document does not list (under "4XX")`},
		{"a 5xx with no range falls to default", "POST /api/v1/orders", 500, problemHeader("1"), ""},
		{"a status no range takes falls to default", "POST /api/v1/orders", 999, problemHeader(""), ""},
		{"a 5xx under 5XX, with its header", "GET /api/v1/products", 502, problemHeader("3"), ""},
		{"lower case 4xx is no range", "GET /api/v1/products", 404, problemHeader(""), "answers 404, which its document does not list"},
		{"an error under a range is still problem+json", "POST /api/v1/orders", 400, http.Header{"Content-Type": {"text/plain"}},
			`as "text/plain", not problem+json`},
	} {
		method, path, _ := strings.Cut(tc.op, " ")
		err := a.Check(method, path, tc.status, tc.h)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// problemHeader is the header of a problem+json answer, with Retry-After
// when retry is not empty.
func problemHeader(retry string) http.Header {
	h := http.Header{"Content-Type": {"application/problem+json"}}
	if retry != "" {
		h.Set("Retry-After", retry)
	}
	return h
}
