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
