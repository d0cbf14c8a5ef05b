package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

type item struct {
	SKU      string `json:"sku" binding:"required"`
	Quantity int    `json:"quantity" binding:"min=1"`
}

type createOrder struct {
	UserID   string `json:"user_id" binding:"required"`
	Currency string `json:"currency" binding:"required,oneof=CNY USD EUR"`
	Items    []item `json:"items" binding:"required,min=1,dive"`
	Note     string `json:"note,omitempty" binding:"max=10"`
}

func TestDecodeJSON(t *testing.T) {
	const good = `{"user_id":"u1","currency":"CNY","items":[{"sku":"tea","quantity":2}]}`
	cases := []struct {
		name, contentType, body string
		wantStatus              int
		wantFields              map[string]string // field -> part of its detail
		wantDetail              string
	}{
		{name: "valid", contentType: "application/json", body: good, wantStatus: http.StatusOK},
		{name: "json with charset", contentType: "application/json; charset=utf-8", body: good, wantStatus: http.StatusOK},
		{name: "vendor +json", contentType: "application/vnd.shanhai+json", body: good, wantStatus: http.StatusOK},
		{name: "no content type", body: good, wantStatus: http.StatusUnsupportedMediaType},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: good, wantStatus: http.StatusUnsupportedMediaType},
		{name: "empty body", contentType: "application/json", body: "", wantStatus: http.StatusBadRequest, wantDetail: "empty"},
		{name: "malformed", contentType: "application/json", body: `{"user_id":}`, wantStatus: http.StatusBadRequest, wantDetail: "malformed"},
		{name: "truncated", contentType: "application/json", body: `{"user_id":"u1"`, wantStatus: http.StatusBadRequest, wantDetail: "truncated"},
		{name: "unknown field", contentType: "application/json", body: `{"user_id":"u1","currency":"CNY","items":[],"admin":true}`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"admin": "not a known field"}},
		{name: "wrong type", contentType: "application/json", body: `{"user_id":"u1","currency":"CNY","items":[{"sku":"tea","quantity":"two"}]}`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"items.quantity": "must be an integer, not string"}},
		{name: "wrong top-level type", contentType: "application/json", body: `[1,2]`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"body": "must be an object"}},
		{name: "trailing value", contentType: "application/json", body: good + `{"user_id":"u2"}`, wantStatus: http.StatusBadRequest, wantDetail: "after the JSON value"},
		{name: "trailing garbage", contentType: "application/json", body: good + ` x`, wantStatus: http.StatusBadRequest, wantDetail: "after the JSON value"},
		{name: "trailing whitespace is fine", contentType: "application/json", body: good + " \n", wantStatus: http.StatusOK},
		// encoding/json lets the last of two equal keys win (and matches
		// keys case-insensitively), so `{"email":"a","email":"b"}` would
		// mean b here and a to any parser that keeps the first: refused.
		{name: "duplicate key", contentType: "application/json", body: `{"user_id":"u2","currency":"CNY","items":[{"sku":"tea","quantity":2}],"user_id":"u1"}`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"user_id": "more than once"}},
		{name: "duplicate key in another case", contentType: "application/json", body: `{"user_id":"u2","currency":"CNY","items":[{"sku":"tea","quantity":2}],"USER_ID":"u1"}`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"USER_ID": "more than once"}},
		{name: "duplicate key nested", contentType: "application/json", body: `{"user_id":"u1","currency":"CNY","items":[{"sku":"tea","quantity":2},{"sku":"a","quantity":1,"sku":"b"}]}`,
			wantStatus: http.StatusBadRequest, wantFields: map[string]string{"items[1].sku": "more than once"}},
		{name: "same key in sibling objects is fine", contentType: "application/json", body: `{"user_id":"u1","currency":"CNY","items":[{"sku":"tea","quantity":2}],"note":"{\"sku\":1}"}`, wantStatus: http.StatusOK},
		{name: "too large", contentType: "application/json", body: `{"user_id":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, wantStatus: http.StatusRequestEntityTooLarge},
		{name: "too large after the value", contentType: "application/json", body: good + strings.Repeat(" ", MaxBodyBytes), wantStatus: http.StatusRequestEntityTooLarge},
		{name: "validation", contentType: "application/json", body: `{"currency":"GBP","items":[{"sku":"","quantity":0}],"note":"far too long a note"}`,
			wantStatus: http.StatusUnprocessableEntity, wantFields: map[string]string{
				"user_id":           "is required",
				"currency":          "one of: CNY, USD, EUR",
				"items[0].sku":      "is required",
				"items[0].quantity": "at least 1",
				"note":              "at most 10 characters",
			}},
		{name: "empty items", contentType: "application/json", body: `{"user_id":"u","currency":"USD","items":[]}`,
			wantStatus: http.StatusUnprocessableEntity, wantFields: map[string]string{"items": "at least 1 items"}},
	}
	s, _ := newTestServer(t, Options{})
	var decoded createOrder
	s.Router().POST("/orders", func(c *gin.Context) {
		decoded = createOrder{}
		if !DecodeJSON(c, &decoded) {
			return
		}
		c.Status(http.StatusOK)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.contentType != "" {
				hdr = []string{"Content-Type", tc.contentType}
			}
			w := do(s.Handler(), http.MethodPost, "/orders", strings.NewReader(tc.body), hdr...)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantStatus == http.StatusOK {
				if decoded.UserID != "u1" || len(decoded.Items) != 1 || decoded.Items[0].Quantity != 2 {
					t.Errorf("decoded %+v", decoded)
				}
				return
			}
			d := decodeProblem(t, w)
			if tc.wantDetail != "" && !strings.Contains(d.Detail, tc.wantDetail) {
				t.Errorf("detail %q lacks %q", d.Detail, tc.wantDetail)
			}
			got := map[string]string{}
			for _, f := range d.Errors {
				got[f.Field] = f.Detail
			}
			if len(got) != len(tc.wantFields) {
				t.Errorf("fields %v, want %v", got, tc.wantFields)
			}
			for f, part := range tc.wantFields {
				if !strings.Contains(got[f], part) {
					t.Errorf("field %q: detail %q lacks %q (all: %v)", f, got[f], part, got)
				}
			}
		})
	}
}
