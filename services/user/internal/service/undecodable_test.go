package service_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestUndecodableTextIsRefusedNotStored: encoding/json turns bytes that are
// not UTF-8, and a lone UTF-16 surrogate escape, into U+FFFD without an
// error, so a sign-up whose password, address or name held them was stored
// with replacement characters in their place: a 201 for data the service
// lost, where the password rule "must be valid UTF-8" promised a 422. Such
// a password was then every password of its shape ("abc\xffdef" and
// "abc\xfedef" logged in alike). Sign-up and PATCH /users/me refuse U+FFFD
// with a 422 naming the field, and nothing is stored.
func TestUndecodableTextIsRefusedNotStored(t *testing.T) {
	h := newHarness(t, serverFree(t, nil))
	for field, body := range map[string]string{
		"password": "{\"email\":%q,\"password\":\"correct horse \xff battery\",\"name\":\"Alice\"}",
		"name":     "{\"email\":%q,\"password\":\"correct horse battery\",\"name\":\"Zo\xffe\"}",
	} {
		email := uniqEmail()
		isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(body, email)), http.StatusUnprocessableEntity, field)
		var n int64
		if err := h.svc.DB.Table("users").Where("email = ?", email).Count(&n).Error; err != nil || n != 0 {
			t.Fatalf("refused sign-up (%s) stored %d accounts (%v)", field, n, err)
		}
	}
	for _, email := range []string{"ali\xffce@example.com", `ali\ud800ce@example.com`} { // raw bytes, a JSON escape
		isProblem(t, h.do("POST", "/api/v1/users", `{"email":"`+email+`","password":"correct horse battery","name":"A"}`),
			http.StatusUnprocessableEntity, "email")
	}
	isProblem(t, h.do("POST", "/api/v1/users", `{"email":"bob@example.com","password":"correct horse \ud83d battery","name":"A"}`),
		http.StatusUnprocessableEntity, "password")

	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email)
	bearer := []string{"Authorization", "Bearer " + access}
	isProblem(t, h.do("PATCH", "/api/v1/users/me", "{\"name\":\"Zo\xffe\"}", bearer...), http.StatusUnprocessableEntity, "name")
	r := h.do("GET", "/api/v1/users/me", "", bearer...)
	if r.Code != http.StatusOK || r.json(t)["name"] != "Alice" {
		t.Fatalf("profile after a refused PATCH: %d %s", r.Code, r.Body)
	}
}
