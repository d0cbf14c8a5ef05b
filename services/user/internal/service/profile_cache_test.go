package service_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A cached profile the service cannot decode is replaced by the first GET's
// fill, and reported once. Since 3d9d380 it was kept until its TTL ran out:
// every GET /users/me read the database and logged a warning.
func TestUnreadableCachedProfileIsReplacedByTheFirstFill(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	p := h.register(email)
	access, _ := h.tokens(email)
	// A PATCH first, so the profile has a generation counter the fill must
	// match (without one, any fill matches).
	if r := h.do("PATCH", "/api/v1/users/me", `{"name":"Alice Liddell"}`, "Authorization", "Bearer "+access); r.Code != 200 {
		t.Fatalf("PATCH /users/me: %d %s", r.Code, r.Body)
	}
	key := "user:profile:" + p["id"].(string)
	if err := h.svc.Redis.Set(t.Context(), key, "{not json", 5*time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.Code != 200 || r.json(t)["name"] != "Alice Liddell" {
			t.Fatalf("GET /users/me: %d %s", r.Code, r.Body)
		}
	}
	cached, err := h.svc.Redis.Get(t.Context(), key).Result()
	var got struct{ ID, Name string }
	if err != nil || json.Unmarshal([]byte(cached), &got) != nil || got.ID != p["id"] || got.Name != "Alice Liddell" {
		t.Fatalf("after 3 GETs the cache holds %q (%v), want the profile", cached, err)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "profile cache value unreadable"); n != 1 || strings.Contains(logs, "profile cache read failed") {
		t.Fatalf("want the unreadable value reported once (%d), as no failed read:\n%s", n, logs)
	}
}

// TestProfileAnswersAreNotStored: every answer of /users/me to an
// authenticated request carries Cache-Control: no-store, as every answer of
// the order listing does (server.NoStore). Only GET's 200 did: PATCH's 200,
// the same profile (email and name), and the problems of both came with no
// Cache-Control. A 401 holds nothing of anyone's and is left as it is.
func TestProfileAnswersAreNotStored(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email)
	bearer := []string{"Authorization", "Bearer " + access}
	for _, tc := range []struct {
		method, body string
		status       int
	}{
		{"GET", "", 200},
		{"PATCH", `{"name":"Alice Liddell"}`, 200},
		{"PATCH", `{"name":" "}`, 422},
		{"PATCH", `{"nickname":"Al"}`, 400},
	} {
		r := h.do(tc.method, "/api/v1/users/me", tc.body, bearer...)
		if r.Code != tc.status || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: %d, Cache-Control %q; want %d and no-store", tc.method, tc.body, r.Code, r.Header.Get("Cache-Control"), tc.status)
		}
	}
	for name, hdr := range map[string][]string{
		"without a token": nil, "with a bad token": {"Authorization", "Bearer not-a-token"},
		"with another X-User-ID": append(bearer, "X-User-ID", "someone-else"),
	} {
		if r := h.do("GET", "/api/v1/users/me", "", hdr...); r.Code != 401 || r.Header.Get("Cache-Control") != "" {
			t.Errorf("%s: %d, Cache-Control %q; want 401 as before, without one", name, r.Code, r.Header.Get("Cache-Control"))
		}
	}
}
