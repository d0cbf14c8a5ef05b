package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func TestAbortWritesProblemJSON(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	after := false
	e.POST("/orders", func(c *gin.Context) {
		Abort(c, http.StatusUnprocessableEntity, "the order is invalid",
			FieldError{Field: "items[0].quantity", Detail: "must be at least 1"})
	}, func(*gin.Context) { after = true })
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/orders", nil))

	if w.Code != http.StatusUnprocessableEntity {
		t.Errorf("status %d", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	if after {
		t.Error("handler chain continued after Abort")
	}
	var d Details
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	want := Details{Type: "about:blank", Title: "Unprocessable Entity", Status: 422, Detail: "the order is invalid",
		Instance: "/orders", Errors: []FieldError{{Field: "items[0].quantity", Detail: "must be at least 1"}}}
	if d.Type != want.Type || d.Title != want.Title || d.Status != want.Status || d.Detail != want.Detail ||
		d.Instance != want.Instance || len(d.Errors) != 1 || d.Errors[0] != want.Errors[0] {
		t.Errorf("body %+v, want %+v", d, want)
	}
}

func TestWriteKeepsExplicitFields(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET("/x", func(c *gin.Context) {
		Write(c, Details{Type: "https://shanhai.dev/problems/out-of-stock", Title: "Out of stock", Status: http.StatusConflict, Instance: "/orders/9"})
	})
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil))
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "https://shanhai.dev/problems/out-of-stock" || m["title"] != "Out of stock" || m["instance"] != "/orders/9" || w.Code != 409 {
		t.Errorf("got %d %v", w.Code, m)
	}
	if _, ok := m["errors"]; ok {
		t.Error("empty errors list serialised")
	}
	if _, ok := m["detail"]; ok {
		t.Error("empty detail serialised")
	}
}

func TestDetailsAsError(t *testing.T) {
	var err error = New(http.StatusNotFound, "order 9 not found")
	if err.Error() != "Not Found: order 9 not found" {
		t.Errorf("Error() = %q", err.Error())
	}
}

// TestUnavailableSaysWhenToRetry: a dependency's outage is a 503 problem with a Retry-After in whole seconds, rounded
// up (a client told to come back early only fails again) and never 0 (which reads as "retry at once").
func TestUnavailableSaysWhenToRetry(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{time.Second, "1"}, {1500 * time.Millisecond, "2"}, {0, "1"}, {10 * time.Millisecond, "1"}, {30 * time.Second, "30"}} {
		e := gin.New()
		e.GET("/orders", func(c *gin.Context) { Unavailable(c, tc.after, "the database is unavailable") })
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/orders", nil))
		var d Details
		if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != ContentType ||
			d.Status != http.StatusServiceUnavailable || d.Detail != "the database is unavailable" {
			t.Errorf("Unavailable(%v): %d %q %+v", tc.after, w.Code, w.Header().Get("Content-Type"), d)
		}
		if got := w.Header().Get("Retry-After"); got != tc.want {
			t.Errorf("Unavailable(%v): Retry-After %q, want %q", tc.after, got, tc.want)
		}
	}
}
