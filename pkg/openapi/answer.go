package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Answers is what a document says each operation may answer, for tests that
// drive a service's routes into their failures (a deadline, a database that
// is down) and check that every answer given is one a client was told of.
type Answers struct{ doc answers }

// answers is the part of a document Answers reads.
type answers struct {
	Paths map[string]map[string]struct {
		Responses map[string]response `json:"responses"`
	} `json:"paths"`
	Components struct {
		Responses map[string]response `json:"responses"`
	} `json:"components"`
}

type response struct {
	Ref     string                     `json:"$ref"`
	Headers map[string]json.RawMessage `json:"headers"`
}

// ParseAnswers reads the answers of doc, an OpenAPI 3.1 JSON document.
func ParseAnswers(doc []byte) (*Answers, error) {
	var a Answers
	if err := json.Unmarshal(doc, &a.doc); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return &a, nil
}

// Check reports how an error answer of the operation method path (the
// document's template, "/api/v1/orders/{id}") differs from its document: a
// status it does not list, a body that is not problem+json, or a Retry-After
// header that its response (or the shared response it refers to) does not
// list, so a client would not know to wait.
//
// The response that documents a status is found as OpenAPI 3 says a client
// finds it: the status's own entry, else its range's ("4XX"), else
// "default". Only the status's own entry was read, so an answer a document
// covered with "5XX" or "default" was reported as not listed, and its
// Retry-After was checked against nothing.
func (a *Answers) Check(method, path string, status int, h http.Header) error {
	op := method + " " + path
	code := strconv.Itoa(status)
	r, key, ok := documenting(a.doc.Paths[path][strings.ToLower(method)].Responses, code)
	if !ok {
		return fmt.Errorf("%s answers %s, which its document does not list", op, code)
	}
	if ct := h.Get("Content-Type"); status >= 400 && !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("%s answers %s as %q, not problem+json", op, code, ct)
	}
	headers := r.Headers
	if name, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
		headers = a.doc.Components.Responses[name].Headers
	}
	if _, listed := headers["Retry-After"]; h.Get("Retry-After") != "" && !listed {
		return fmt.Errorf("%s answers %s with Retry-After, which its document does not list (under %q)", op, code, key)
	}
	return nil
}

// documenting returns the entry of responses that documents the status code
// and its key: code itself, which takes precedence over its range (only
// "1XX" to "5XX", upper case, are ranges), which takes precedence over
// "default", the answers not declared otherwise.
func documenting(responses map[string]response, code string) (response, string, bool) {
	keys := []string{code, "default"}
	if len(code) == 3 && code[0] >= '1' && code[0] <= '5' {
		keys = []string{code, code[:1] + "XX", "default"}
	}
	for _, k := range keys {
		if r, ok := responses[k]; ok {
			return r, k, true
		}
	}
	return response{}, "", false
}
