package service_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/page"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

func TestCreateOrderIgnoresClientPriceAndReplays(t *testing.T) {
	h := newHarness(t)
	body := `{"items":[{"sku":"POT-YIXING","quantity":2,"unit_price_cents":1},{"sku":"INK-SET","quantity":1}]}`
	first := h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "k-1")
	if first.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", first.Status, first.Body)
	}
	var o orderView
	first.json(t, &o)
	if o.TotalCents != 2*6400+3500 || o.Items[0].UnitPriceCents != 6400 || o.Status != "PENDING" {
		t.Fatalf("order = %+v: the client's unit price must be ignored", o)
	}
	if loc := first.Header.Get("Location"); loc != "/api/v1/orders/"+o.ID {
		t.Errorf("Location = %q", loc)
	}

	// Same key, same request (other spacing): the first response again.
	again := h.do("POST", "/api/v1/orders", "alice", strings.ReplaceAll(body, ",", " , "), "Idempotency-Key", "k-1")
	if again.Status != first.Status || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s (replayed=%q)", again.Status, again.Body, again.Header.Get("Idempotent-Replayed"))
	}
	// Same key, different request: 422 naming the header.
	other := h.do("POST", "/api/v1/orders", "alice", `{"items":[{"sku":"INK-SET","quantity":1}]}`, "Idempotency-Key", "k-1")
	if other.Status != http.StatusUnprocessableEntity || !slices.Contains(other.problemFields(t), "Idempotency-Key") {
		t.Fatalf("key reuse: %d %s", other.Status, other.Body)
	}
	// The replay created nothing: alice has exactly one order.
	var page struct{ Orders []orderView }
	h.do("GET", "/api/v1/orders", "alice", "").json(t, &page)
	if len(page.Orders) != 1 || page.Orders[0].ID != o.ID {
		t.Fatalf("alice's orders = %+v", page.Orders)
	}
	// Another user's identical key is independent.
	if r := h.do("POST", "/api/v1/orders", "bob", body, "Idempotency-Key", "k-1"); r.Status != http.StatusCreated || string(r.Body) == string(first.Body) {
		t.Fatalf("bob with alice's key: %d %s", r.Status, r.Body)
	}
}

// TestReplayFingerprintIsTheItemsNotTheBytes: the Idempotency-Key
// fingerprint is over the decoded items (each line's SKU and quantity, in
// order), not the body's bytes, so a retry that re-serialises the same
// request (keys in another order, other whitespace, escapes, an ignored
// price echoed or not) is replayed rather than refused 422. Lines in
// another order are another request: the order's lines are numbered as
// sent, and a replay would answer them in the first request's order.
func TestReplayFingerprintIsTheItemsNotTheBytes(t *testing.T) {
	h := newHarness(t)
	first := h.do("POST", "/api/v1/orders", "alice", `{"items":[{"sku":"INK-SET","quantity":2},{"sku":"CAM-1","quantity":1}]}`, "Idempotency-Key", "fp")
	if first.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", first.Status, first.Body)
	}
	for name, body := range map[string]string{
		"keys reordered": `{"items":[{"quantity":2,"sku":"INK-SET"},{"quantity":1,"sku":"CAM-1"}]}`,
		"whitespace":     "{\n  \"items\" : [\n\t{\"sku\": \"INK-SET\", \"quantity\": 2},\r\n {\"sku\":\"CAM-1\",\"quantity\":1} ]\n}\n",
		"escapes":        `{"items":[{"sku":"INK\u002dSET","quantity":2},{"\u0073ku":"CAM-1","quantity":1}]}`,
		"price echoed":   `{"items":[{"sku":"INK-SET","quantity":2,"unit_price_cents":3500},{"sku":"CAM-1","quantity":1,"unit_price_cents":1}]}`,
	} {
		r := h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "fp")
		if r.Status != first.Status || string(r.Body) != string(first.Body) || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: %d %s; want the replay", name, r.Status, r.Body)
		}
	}
	swapped := h.do("POST", "/api/v1/orders", "alice", `{"items":[{"sku":"CAM-1","quantity":1},{"sku":"INK-SET","quantity":2}]}`, "Idempotency-Key", "fp")
	if swapped.Status != http.StatusUnprocessableEntity {
		t.Errorf("lines swapped: %d %s; want 422", swapped.Status, swapped.Body)
	}
}

func TestOrdersOfOtherUsersAre404(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`)
	for _, r := range []reply{
		h.do("GET", "/api/v1/orders/"+o.ID, "bob", ""),
		h.do("POST", "/api/v1/orders/"+o.ID+"/cancel", "bob", ""),
	} {
		if r.Status != http.StatusNotFound {
			t.Fatalf("bob on alice's order: %d %s", r.Status, r.Body)
		}
	}
	// X-User-ID naming alice does not help bob either.
	if r := h.do("GET", "/api/v1/orders/"+o.ID, "bob", "", "X-User-ID", "alice"); r.Status != http.StatusUnauthorized {
		t.Fatalf("spoofed X-User-ID: %d", r.Status)
	}
	var page struct{ Orders []orderView }
	h.do("GET", "/api/v1/orders", "bob", "").json(t, &page)
	if len(page.Orders) != 0 {
		t.Fatalf("bob lists %v", page.Orders)
	}
	if got := h.getOrder("alice", o.ID); got.Status != "PENDING" {
		t.Fatalf("bob's cancel changed alice's order: %s", got.Status)
	}
}

func TestCancelOnlyWhilePending(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`)
	r := h.do("POST", "/api/v1/orders/"+o.ID+"/cancel", "alice", "")
	var c orderView
	r.json(t, &c)
	if r.Status != http.StatusOK || c.Status != "CANCELLED" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r := h.do("POST", "/api/v1/orders/"+o.ID+"/cancel", "alice", ""); r.Status != http.StatusOK {
		t.Fatalf("repeat cancel: %d %s", r.Status, r.Body)
	}
	paid := h.createOrder("alice", `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`)
	h.publishResult(t, "payment.succeeded", "evt-"+paid.ID, paid.ID, "", nil)
	runtest.Eventually(t, 10*time.Second, "order paid", func() bool { return h.getOrder("alice", paid.ID).Status == "PAID" })
	if r := h.do("POST", "/api/v1/orders/"+paid.ID+"/cancel", "alice", ""); r.Status != http.StatusConflict {
		t.Fatalf("cancel paid: %d %s", r.Status, r.Body)
	}
}

func TestListOrdersPaginatesAndFilters(t *testing.T) {
	h := newHarness(t)
	var want []string
	for range 5 {
		want = append([]string{h.createOrder("alice", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`).ID}, want...)
	}
	h.do("POST", "/api/v1/orders/"+want[2]+"/cancel", "alice", "")
	var got []string
	path := "/api/v1/orders?limit=2"
	for range 10 {
		var page struct {
			Orders     []orderView
			NextCursor string `json:"next_cursor"`
		}
		h.do("GET", path, "alice", "").json(t, &page)
		for _, o := range page.Orders {
			got = append(got, o.ID)
		}
		if page.NextCursor == "" {
			break
		}
		path = "/api/v1/orders?limit=2&cursor=" + page.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	var cancelled struct{ Orders []orderView }
	h.do("GET", "/api/v1/orders?status=CANCELLED", "alice", "").json(t, &cancelled)
	if len(cancelled.Orders) != 1 || cancelled.Orders[0].ID != want[2] {
		t.Fatalf("status filter = %+v", cancelled.Orders)
	}
}

// TestTamperedCursorStaysInTheCallersOrders: a cursor is only a position
// (the listing reads user_id = caller AND id < cursor), so one made from
// another user's order id, or from any UUID, starts the caller's own list
// elsewhere and shows nothing of anyone else's. By design, not a 400: any
// UUID is a position, and refusing one the caller holds no order at would
// need a lookup that tells whose ids exist.
func TestTamperedCursorStaysInTheCallersOrders(t *testing.T) {
	h := newHarness(t)
	bobs := h.createOrder("bob", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`).ID
	var alices []string
	for range 3 {
		alices = append(alices, h.createOrder("alice", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`).ID)
	}
	for _, cursor := range []string{alices[2], alices[0], "ffffffff-ffff-ffff-ffff-ffffffffffff", "00000000-0000-0000-0000-000000000000"} {
		var pg struct{ Orders []orderView }
		r := h.do("GET", "/api/v1/orders?cursor="+page.Cursor(cursor), "bob", "")
		r.json(t, &pg)
		var got []string
		for _, o := range pg.Orders {
			got = append(got, o.ID)
		}
		want := []string{bobs}
		if cursor < bobs { // ids are UUIDv7: bob's order is older than alice's, newer than the zero id
			want = nil
		}
		if r.Status != http.StatusOK || !slices.Equal(got, want) {
			t.Fatalf("bob's list after %s: %d %v, want %v (alice's are %v)", cursor, r.Status, got, want, alices)
		}
	}
}

func TestBadInputIsProblemNamingTheField(t *testing.T) {
	h := newHarness(t)
	lines := make([]string, 51)
	for i := range lines {
		lines[i] = `{"sku":"CUP-PORCELAIN","quantity":1}`
	}
	key := []string{"Idempotency-Key", "k"}
	// alice's token with its payload swapped for bob's: the signature no longer matches.
	tampered := h.token("alice")
	if parts, bobs := strings.Split(tampered, "."), strings.Split(h.token("bob"), "."); len(parts) == 3 && len(bobs) == 3 {
		tampered = parts[0] + "." + bobs[1] + "." + parts[2]
	}
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		field                    string
	}{
		{"no key", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, nil, 400, "Idempotency-Key"},
		{"long key", "POST", "/api/v1/orders", `{"items":[]}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "Idempotency-Key"},
		{"non-ascii key", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, []string{"Idempotency-Key", "k\xff\xfe"}, 400, "Idempotency-Key"},
		{"malformed json", "POST", "/api/v1/orders", `{"items":[`, key, 400, ""},
		{"unknown field", "POST", "/api/v1/orders", `{"items":[],"discount":5}`, key, 400, "discount"},
		{"wrong type", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":"two"}]}`, key, 400, "quantity"},
		{"unknown sku", "POST", "/api/v1/orders", `{"items":[{"sku":"NOPE","quantity":1}]}`, key, 422, "items[0].sku"},
		{"zero quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":0}]}`, key, 422, "items[0].quantity"},
		{"quantity 101", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":101}]}`, key, 422, "items[0].quantity"},
		{"51 lines", "POST", "/api/v1/orders", `{"items":[` + strings.Join(lines, ",") + `]}`, key, 422, "items"},
		{"no items", "POST", "/api/v1/orders", `{}`, key, 422, "items"},
		{"oversized", "POST", "/api/v1/orders", `{"items":[{"sku":"` + strings.Repeat("x", 2<<20) + `","quantity":1}]}`, key, 413, ""},
		{"bad id", "GET", "/api/v1/orders/not-a-uuid", "", nil, 400, "id"},
		{"bad id cancel", "POST", "/api/v1/orders/1/cancel", "", nil, 400, "id"},
		{"bad status", "GET", "/api/v1/orders?status=SHIPPED", "", nil, 400, "status"},
		{"bad limit", "GET", "/api/v1/orders?limit=1000", "", nil, 400, "limit"},
		{"bad cursor", "GET", "/api/v1/orders?cursor=not-a-cursor", "", nil, 400, "cursor"},
		// A pair url.ParseQuery cannot decode is dropped from the query gin reads: the filter or page asked for
		// would vanish, and the whole list come back 200.
		{"bad escape in status", "GET", "/api/v1/orders?status=%zz", "", nil, 400, "status"},
		{"bad escape after status", "GET", "/api/v1/orders?status=PAID%2", "", nil, 400, "status"},
		{"semicolon after status", "GET", "/api/v1/orders?status=PAID;limit=1", "", nil, 400, "status"},
		{"bad escape in cursor", "GET", "/api/v1/orders?cursor=%G0", "", nil, 400, "cursor"},
		{"bad escape in limit", "GET", "/api/v1/orders?limit=1%", "", nil, 400, "limit"},
		// Hostile bodies: each is a 4xx problem, never a 5xx or a panic.
		{"not json", "POST", "/api/v1/orders", `items`, key, 400, ""},
		{"array body", "POST", "/api/v1/orders", `[{"sku":"CUP-PORCELAIN","quantity":1}]`, key, 400, ""},
		{"null body", "POST", "/api/v1/orders", `null`, key, 422, "items"},
		{"null items", "POST", "/api/v1/orders", `{"items":null}`, key, 422, "items"},
		{"null line", "POST", "/api/v1/orders", `{"items":[null]}`, key, 422, "items[0].sku"},
		{"null fields", "POST", "/api/v1/orders", `{"items":[{"sku":null,"quantity":null}]}`, key, 422, "items[0].quantity"},
		{"items object", "POST", "/api/v1/orders", `{"items":{"sku":"CUP-PORCELAIN"}}`, key, 400, "items"},
		{"sku number", "POST", "/api/v1/orders", `{"items":[{"sku":7,"quantity":1}]}`, key, 400, "sku"},
		{"unknown line field", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1,"price":1}]}`, key, 400, "price"},
		{"trailing garbage", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]} x`, key, 400, ""},
		{"second value", "POST", "/api/v1/orders", `{"items":[]}{"items":[]}`, key, 400, ""},
		{"empty body", "POST", "/api/v1/orders", "", append([]string{"Content-Type", "application/json"}, key...), 400, ""},
		{"text/plain", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, append([]string{"Content-Type", "text/plain"}, key...), 415, ""},
		{"bad content type", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, append([]string{"Content-Type", "application/json; ="}, key...), 415, ""},
		{"negative quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":-5}]}`, key, 422, "items[0].quantity"},
		{"huge quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":9223372036854775807}]}`, key, 422, "items[0].quantity"},
		{"overflowing quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":99999999999999999999}]}`, key, 400, "quantity"},
		{"exponent quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1e400}]}`, key, 400, ""},
		{"fractional quantity", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1.5}]}`, key, 400, "quantity"},
		{"huge client price", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1,"unit_price_cents":99999999999999999999}]}`, key, 400, "unit_price_cents"},
		{"duplicate sku", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1},{"sku":"CUP-PORCELAIN","quantity":2}]}`, key, 422, "items[1].sku"},
		{"nul in sku", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN\u0000","quantity":1}]}`, key, 422, "items[0].sku"},
		{"empty key", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, []string{"Idempotency-Key", ""}, 400, "Idempotency-Key"},
		{"1 KB key", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, []string{"Idempotency-Key", strings.Repeat("k", 1024)}, 400, "Idempotency-Key"},
		{"utf-8 key", "POST", "/api/v1/orders", `{"items":[{"sku":"CUP-PORCELAIN","quantity":1}]}`, []string{"Idempotency-Key", "ключ"}, 400, "Idempotency-Key"},
		{"overlong id", "GET", "/api/v1/orders/" + strings.Repeat("a", 4096), "", nil, 400, "id"},
		{"braced uuid", "GET", "/api/v1/orders/{" + uuid.NewString() + "}", "", nil, 400, "id"},
		{"urn uuid", "POST", "/api/v1/orders/urn:uuid:" + uuid.NewString() + "/cancel", "", nil, 400, "id"},
		{"nul in id", "GET", "/api/v1/orders/%00" + uuid.NewString()[1:], "", nil, 400, "id"},
		{"unknown id", "GET", "/api/v1/orders/" + uuid.NewString(), "", nil, 404, ""},
		{"cancel unknown id", "POST", "/api/v1/orders/" + uuid.NewString() + "/cancel", "", nil, 404, ""},
		{"lower-case status", "GET", "/api/v1/orders?status=pending", "", nil, 400, "status"},
		{"bogus status", "GET", "/api/v1/orders?status=bogus", "", nil, 400, "status"},
		{"negative limit", "GET", "/api/v1/orders?limit=-1", "", nil, 400, "limit"},
		{"zero limit", "GET", "/api/v1/orders?limit=0", "", nil, 400, "limit"},
		{"huge limit", "GET", "/api/v1/orders?limit=99999999999999999999", "", nil, 400, "limit"},
		{"word limit", "GET", "/api/v1/orders?limit=ten", "", nil, 400, "limit"},
		{"cursor of a non-id", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("' OR 1=1 --")), "", nil, 400, "cursor"},
		{"padded cursor", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString())) + "=", "", nil, 400, "cursor"},
		{"truncated cursor", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString()))[:20], "", nil, 400, "cursor"},
		// uuid.Parse takes these spellings too, but ids compare as text: they would page from the wrong place.
		{"upper-case cursor", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("0190A5C4-8F1E-7C3B-9A2D-4E5F6A7B8C9D")), "", nil, 400, "cursor"},
		{"braced cursor", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("{"+uuid.NewString()+"}")), "", nil, 400, "cursor"},
		{"urn cursor", "GET", "/api/v1/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("urn:uuid:"+uuid.NewString())), "", nil, 400, "cursor"},
		{"garbage token", "GET", "/api/v1/orders", "", []string{"Authorization", "Bearer not.a.token"}, 401, ""},
		{"basic auth", "GET", "/api/v1/orders", "", []string{"Authorization", "Basic YWxpY2U6cHc="}, 401, ""},
		{"tampered token", "GET", "/api/v1/orders", "", []string{"Authorization", "Bearer " + tampered}, 401, ""},
		{"other X-User-ID", "GET", "/api/v1/orders", "", []string{"X-User-ID", "ALICE"}, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, "alice", tt.body, tt.hdr...)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			var p struct{ Type string }
			if r.json(t, &p); p.Type == "" {
				t.Fatalf("problem without a type: %s", r.Body)
			}
			fields := r.problemFields(t)
			if tt.field != "" && !slices.ContainsFunc(fields, func(f string) bool { return f == tt.field || strings.HasSuffix(f, "."+tt.field) }) {
				t.Fatalf("fields %v do not name %q: %s", fields, tt.field, r.Body)
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		if r := h.do("GET", "/api/v1/products", "", ""); r.Status != http.StatusUnauthorized {
			t.Fatalf("status %d", r.Status)
		}
	})
}

func TestProductsFromCatalogue(t *testing.T) {
	h := newHarness(t)
	var out struct {
		Products []struct {
			SKU        string `json:"sku"`
			PriceCents int64  `json:"price_cents"`
		}
	}
	r := h.do("GET", "/api/v1/products", "alice", "")
	r.json(t, &out)
	if r.Status != 200 || len(out.Products) != 8 {
		t.Fatalf("products: %d %s", r.Status, r.Body)
	}
}

// TestTimestampsAgreeAcrossResponses: the created order, its cancel answer
// and later reads give the same created_at and updated_at (PostgreSQL keeps
// microseconds; an answer must not show a time no read returns).
func TestTimestampsAgreeAcrossResponses(t *testing.T) {
	h := newHarness(t)
	type stamps struct {
		CreatedAt string `json:"created_at"`
		UpdatedAt string `json:"updated_at"`
	}
	read := func(r reply) stamps {
		t.Helper()
		var s stamps
		r.json(t, &s)
		return s
	}
	created := h.do("POST", "/api/v1/orders", "alice", `{"items":[{"sku":"INK-SET","quantity":1}]}`, "Idempotency-Key", "ts")
	if created.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.Status, created.Body)
	}
	var o orderView
	created.json(t, &o)
	if got, want := read(h.do("GET", "/api/v1/orders/"+o.ID, "alice", "")), read(created); got != want {
		t.Errorf("GET answers %+v, the create answered %+v", got, want)
	}
	cancelled := h.do("POST", "/api/v1/orders/"+o.ID+"/cancel", "alice", "")
	if cancelled.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", cancelled.Status, cancelled.Body)
	}
	if got, want := read(h.do("GET", "/api/v1/orders/"+o.ID, "alice", "")), read(cancelled); got != want {
		t.Errorf("GET answers %+v, the cancel answered %+v", got, want)
	}
}

// TestSubjectWithNULIs401: a validly signed token whose sub holds a NUL (no user id the user service issues;
// PostgreSQL's text cannot hold one) names nobody: every route answers 401 problem+json, never a 5xx from the
// database refusing the query.
func TestSubjectWithNULIs401(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`)
	for _, user := range []string{"alice\x00", "\x00"} {
		for _, tt := range []struct{ method, path, body string }{
			{"GET", "/api/v1/orders", ""},
			{"GET", "/api/v1/orders?status=PENDING", ""},
			{"GET", "/api/v1/orders/" + o.ID, ""},
			{"POST", "/api/v1/orders/" + o.ID + "/cancel", ""},
			{"POST", "/api/v1/orders", `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`},
			{"GET", "/api/v1/products", ""},
		} {
			r := h.do(tt.method, tt.path, user, tt.body, "Idempotency-Key", "k-"+uuid.NewString())
			if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("%s %s as %q: %d %s; want 401 problem+json", tt.method, tt.path, user, r.Status, r.Body)
			}
		}
	}
	if got := h.getOrder("alice", o.ID); got.Status != "PENDING" {
		t.Fatalf("alice's order after the NUL subjects: %s", got.Status)
	}
}

// TestConcurrentRequestsWithOneKeyMakeOneOrder: requests racing with one
// Idempotency-Key make one order. Those with the first request's body all
// answer its 201 (all but one replayed), those with another body 422, and
// another user's request with the same key is its own order.
func TestConcurrentRequestsWithOneKeyMakeOneOrder(t *testing.T) {
	h := newHarness(t)
	const n = 8
	same := `{"items":[{"sku":"INK-SET","quantity":1}]}`
	other := `{"items":[{"sku":"INK-SET","quantity":2}]}`
	replies := make([]reply, 2*n)
	var wg sync.WaitGroup
	for i := range replies {
		body := same
		if i%2 == 1 {
			body = other
		}
		wg.Go(func() { replies[i] = h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "race") })
	}
	wg.Wait()
	var created []reply
	for _, r := range replies {
		switch r.Status {
		case http.StatusCreated:
			created = append(created, r)
		case http.StatusUnprocessableEntity:
			if !slices.Contains(r.problemFields(t), "Idempotency-Key") {
				t.Errorf("422 not naming the key: %s", r.Body)
			}
		default:
			t.Errorf("%d %s", r.Status, r.Body)
		}
	}
	if len(created) != n {
		t.Fatalf("%d of %d requests answered 201, want the %d with the winning body", len(created), len(replies), n)
	}
	fresh := 0
	for _, r := range created {
		if string(r.Body) != string(created[0].Body) || r.Header.Get("Location") != created[0].Header.Get("Location") {
			t.Errorf("answers differ:\n%s %s\n%s %s", r.Header.Get("Location"), r.Body, created[0].Header.Get("Location"), created[0].Body)
		}
		if r.Header.Get("Idempotent-Replayed") != "true" {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers not marked replayed, want 1", fresh)
	}
	var page struct{ Orders []orderView }
	h.do("GET", "/api/v1/orders", "alice", "").json(t, &page)
	if len(page.Orders) != 1 {
		t.Fatalf("alice has %d orders after one key, want 1", len(page.Orders))
	}
	var n64 int64
	if err := h.svc.DB.Raw("SELECT count(*) FROM outbox WHERE event_type = 'order.created'").Scan(&n64).Error; err != nil {
		t.Fatal(err)
	}
	if n64 != 1 {
		t.Errorf("%d order.created events, want 1", n64)
	}
	if r := h.do("POST", "/api/v1/orders", "bob", same, "Idempotency-Key", "race"); r.Status != http.StatusCreated ||
		r.Header.Get("Idempotent-Replayed") != "" || r.Header.Get("Location") == created[0].Header.Get("Location") {
		t.Errorf("bob with alice's key: %d %s", r.Status, r.Body)
	}
}

// TestUnknownSKUProblemIsSmallerThanTheRequest: the 422 for an unknown SKU
// names it without echoing all of it; an 800 kB SKU that %q spells out at
// 10 bytes per 4 was answered with a 2 MB problem.
func TestUnknownSKUProblemIsSmallerThanTheRequest(t *testing.T) {
	h := newHarness(t)
	body := `{"items":[{"sku":"` + strings.Repeat("\U000F0000", 200_000) + `","quantity":1}]}`
	r := h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "big-sku")
	if r.Status != http.StatusUnprocessableEntity || !slices.Contains(r.problemFields(t), "items[0].sku") {
		t.Fatalf("%d %.300s", r.Status, r.Body)
	}
	if len(r.Body) > 4<<10 {
		t.Errorf("a %d-byte problem for a %d-byte request", len(r.Body), len(body))
	}
}

// TestRepeatedStatusIsRefused: a list asked with status twice is a 400
// naming status. The first value was used and the rest ignored, so
// ?status=PENDING&status=BOGUS answered 200, and a client asking
// ?status=PAID&status=FAILED (one common way to ask for either) silently got
// only the PAID orders.
func TestRepeatedStatusIsRefused(t *testing.T) {
	h := newHarness(t)
	h.createOrder("alice", `{"items":[{"sku":"INK-SET","quantity":1}]}`)
	for _, q := range []string{"status=PENDING&status=BOGUS", "status=PAID&status=FAILED", "status=PENDING&status=PENDING", "status=PENDING&status="} {
		r := h.do("GET", "/api/v1/orders?"+q, "alice", "")
		if r.Status != http.StatusBadRequest || !slices.Contains(r.problemFields(t), "status") {
			t.Errorf("?%s: %d %s; want 400 naming status", q, r.Status, r.Body)
		}
	}
	if r := h.do("GET", "/api/v1/orders?status=PENDING", "alice", ""); r.Status != http.StatusOK {
		t.Errorf("one status: %d %s", r.Status, r.Body)
	}
}

// TestUnknownListParameterIsRefused: a listing's query parameter other than
// status, limit and cursor is a 400 naming it. It was ignored, so a
// misspelled ?stauts=PAID listed every status, and ?offset=1 or ?page=2
// answered the first page again, which a client paging by it read forever.
func TestUnknownListParameterIsRefused(t *testing.T) {
	h := newHarness(t)
	h.createOrder("alice", `{"items":[{"sku":"INK-SET","quantity":1}]}`)
	for q, field := range map[string]string{
		"offset=-1": "offset", "offset=1&limit=1": "offset", "page=2": "page", "stauts=PAID": "stauts",
		"Limit=1": "Limit", "status=PENDING&cursor_id=x": "cursor_id", "limit=1&": "", "x": "x",
		// A pair without a name is named as pkg/server names one it cannot
		// decode: a problem field "" points the client nowhere.
		"=x": "query", "limit=1&=": "query",
	} {
		wantQueryAnswer(t, q, field, h.do("GET", "/api/v1/orders?"+q, "alice", ""))
	}
	if r := h.do("GET", "/api/v1/orders?status=PENDING&limit=5&cursor=", "alice", ""); r.Status != http.StatusOK {
		t.Errorf("known parameters: %d %s", r.Status, r.Body)
	}
}

// TestUnknownProductsParameterIsRefused: the catalogue reads no query
// parameter, so any is a 400 naming it, as the order listing answers one it
// does not know. It was ignored: ?limit=2 or ?sku=CAM-1 answered the whole
// catalogue as if it were what was asked for.
func TestUnknownProductsParameterIsRefused(t *testing.T) {
	h := newHarness(t)
	for q, field := range map[string]string{
		"limit=2": "limit", "sku=CAM-1": "sku", "cursor=x&page=2": "cursor", "=x": "query", "": "",
	} {
		wantQueryAnswer(t, q, field, h.do("GET", "/api/v1/products?"+q, "alice", ""))
	}
}

// wantQueryAnswer checks the answer r to the query q: a 400 naming field,
// or a 200 where field is "".
func wantQueryAnswer(t *testing.T, q, field string, r reply) {
	t.Helper()
	if field == "" {
		if r.Status != http.StatusOK {
			t.Errorf("?%s: %d %s; want 200", q, r.Status, r.Body)
		}
		return
	}
	if r.Status != http.StatusBadRequest || !slices.Contains(r.problemFields(t), field) {
		t.Errorf("?%s: %d %s; want 400 naming %s", q, r.Status, r.Body, field)
	}
}

// TestTwoIdempotencyKeysAreRefused: a create with two Idempotency-Key
// header lines is a 400 naming the header. The first was used and the
// second ignored, so which key made the order depended on the order the
// lines arrived in, and a retry whose proxy kept only the other line (or
// joined them, "a, b") made a second order.
func TestTwoIdempotencyKeysAreRefused(t *testing.T) {
	h := newHarness(t)
	req, err := http.NewRequest("POST", h.srv.URL+"/api/v1/orders", strings.NewReader(`{"items":[{"sku":"INK-SET","quantity":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.token("alice"))
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if r.Status != http.StatusBadRequest || !slices.Contains(r.problemFields(t), "Idempotency-Key") {
		t.Fatalf("two keys: %d %s; want 400 naming Idempotency-Key", r.Status, r.Body)
	}
	var page struct{ Orders []orderView }
	h.do("GET", "/api/v1/orders", "alice", "").json(t, &page)
	if len(page.Orders) != 0 {
		t.Fatalf("an order was made: %+v", page.Orders)
	}
}

// TestOrderAnswersAreNotStored: an order is personal data, as the profile
// the user service answers with no-store is. Without a Cache-Control a
// browser kept each answer in its disk cache, readable there after logout.
func TestOrderAnswersAreNotStored(t *testing.T) {
	h := newHarness(t)
	body := `{"items":[{"sku":"INK-SET","quantity":1}]}`
	created := h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "k-store")
	var o orderView
	created.json(t, &o)
	for name, r := range map[string]reply{
		"create": created,
		"replay": h.do("POST", "/api/v1/orders", "alice", body, "Idempotency-Key", "k-store"),
		"get":    h.do("GET", "/api/v1/orders/"+o.ID, "alice", ""),
		"list":   h.do("GET", "/api/v1/orders?status=PENDING", "alice", ""),
		"cancel": h.do("POST", "/api/v1/orders/"+o.ID+"/cancel", "alice", ""),
	} {
		if r.Status >= 300 || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, Cache-Control %q; want a 2xx with no-store", name, r.Status, r.Header.Get("Cache-Control"))
		}
	}
}
