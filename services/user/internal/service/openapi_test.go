package service_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// The OpenAPI document and the gin routes must list the same operations: a
// route nobody documented, or a documented path that does not exist, fails.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarness(t, nil)
	if err := openapi.Check(ports.OpenAPI, h.svc.Server.Router().Routes(), nil); err != nil {
		t.Fatal(err)
	}

	// And the document is what /openapi.json serves.
	r := h.do("GET", "/openapi.json", "")
	if r.Code != 200 || string(r.Body) != string(ports.OpenAPI) {
		t.Fatalf("/openapi.json: %d", r.Code)
	}
}

// documentedAnswers is what the document lists for each operation ("POST
// /api/v1/users"): status → media types, a $ref to components.responses
// followed.
func documentedAnswers(t *testing.T) map[string]map[string][]string {
	t.Helper()
	type answer struct {
		Ref     string                     `json:"$ref"`
		Content map[string]json.RawMessage `json:"content"`
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]answer `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(ports.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	ops := map[string]map[string][]string{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			var op struct {
				Responses map[string]answer `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil || op.Responses == nil {
				continue // "parameters" and the like
			}
			answers := map[string][]string{}
			for status, a := range op.Responses {
				answers[status] = nil
				if name, ok := strings.CutPrefix(a.Ref, "#/components/responses/"); ok {
					ref, found := doc.Components.Responses[name]
					if !found {
						t.Fatalf("%s %s %s: no components.responses.%s", method, path, status, name)
					}
					a = ref
				}
				for media := range a.Content {
					answers[status] = append(answers[status], media)
				}
			}
			ops[strings.ToUpper(method)+" "+path] = answers
		}
	}
	return ops
}

// Every answer an operation really gives is in the document, an error as
// problem+json: the deadline middleware's 504 for a caller whose
// X-Request-Timeout-Ms has run out and its 400 for a malformed one, on every
// route, and the 503 of a revocation that outlasts its own 5 s (logout, and a
// refresh that finds its token reused), which a client should retry. A client
// gone away is answered 499, which nobody reads, so it is left out.
func TestOpenAPIDocumentsEveryAnswerGiven(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	access, refresh := h.tokens(email)
	bodies := map[string]string{
		"POST /api/v1/users":            fmt.Sprintf(`{"email":%q,"password":%q,"name":"Bob"}`, uniqEmail(), password),
		"POST /api/v1/sessions":         fmt.Sprintf(`{"email":%q,"password":%q}`, email, password),
		"POST /api/v1/sessions/refresh": fmt.Sprintf(`{"refresh_token":%q}`, refresh),
		"DELETE /api/v1/sessions":       fmt.Sprintf(`{"refresh_token":%q}`, refresh),
		"PATCH /api/v1/users/me":        `{"name":"Bob"}`,
	}
	documented := documentedAnswers(t)
	for op, answers := range documented {
		method, path, _ := strings.Cut(op, " ")
		for _, deadline := range []string{"0", "soon"} {
			r := h.do(method, path, bodies[op], "X-Request-Timeout-Ms", deadline, "Authorization", "Bearer "+access)
			checkDocumented(t, op, "X-Request-Timeout-Ms: "+deadline, answers, r)
		}
	}

	// A family whose root another transaction holds (a rotation stuck on a
	// slow database) cannot be revoked within the 5 s.
	_, spent := h.tokens(email)
	refreshed := h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, spent))
	if refreshed.Code != http.StatusOK {
		t.Fatalf("refresh: %d %s", refreshed.Code, refreshed.Body)
	}
	var family string
	if err := h.svc.DB.Raw("SELECT family_id FROM refresh_tokens WHERE token_hash = ?", session.Hash(spent)).Scan(&family).Error; err != nil {
		t.Fatal(err)
	}
	tx := h.svc.DB.Begin()
	defer tx.Rollback()
	if err := tx.Exec("SELECT id FROM refresh_tokens WHERE id = ? FOR UPDATE", family).Error; err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for op, secret := range map[string]string{
		"DELETE /api/v1/sessions":       refreshed.json(t)["refresh_token"].(string),
		"POST /api/v1/sessions/refresh": spent, // a reuse: its family is revoked
	} {
		wg.Go(func() {
			method, path, _ := strings.Cut(op, " ")
			r := h.do(method, path, fmt.Sprintf(`{"refresh_token":%q}`, secret))
			if r.Code != http.StatusServiceUnavailable {
				t.Errorf("%s past its revocation's 5 s: %d %s, want 503", op, r.Code, r.Body)
			}
			checkDocumented(t, op, "a revocation past its 5 s", documented[op], r)
		})
	}
	wg.Wait()
}
func checkDocumented(t *testing.T, op, what string, answers map[string][]string, r response) {
	t.Helper()
	media, ok := answers[strconv.Itoa(r.Code)]
	if !ok {
		t.Errorf("%s, %s: answered %d, which the document does not list", op, what, r.Code)
		return
	}
	if r.Code < 400 {
		return
	}
	if len(media) != 1 || media[0] != "application/problem+json" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("%s, %s: %d is %q, documented as %v; want problem+json", op, what, r.Code, r.Header.Get("Content-Type"), media)
	}
}
