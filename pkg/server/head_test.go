package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// rawResponse sends one request over its own connection, as a health checker
// would, and returns the parsed response and every byte the server sent
// after the header: for HEAD that must be nothing, whatever Content-Length
// says (http.Client would not tell, it never reads a HEAD body).
func rawResponse(t *testing.T, addr, method, path string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, method+" "+path+" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if method != http.MethodHead {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	rest, err := io.ReadAll(br) // up to the close the server does after the response
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(rest)
}

// headers are a response's headers less the ones that differ per request.
func headers(r *http.Response) http.Header {
	h := r.Header.Clone()
	h.Del("Date")
	h.Del(RequestIDHeader)
	return h
}

func TestHeadIsAnsweredByGetRoutes(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "head-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, logs := newTestServer(t, Options{Telemetry: p})
	var methods steps // what the handler saw
	// Group middleware is part of the GET route: HEAD must run it too.
	api := s.Router().Group("/api", func(c *gin.Context) { c.Header("X-Group", "ran") })
	api.GET("/orders/:id", func(c *gin.Context) {
		methods.add(c.Request.Method)
		c.Header("ETag", `"v1"`)
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "total_cents": 1200})
	})
	api.POST("/orders", func(c *gin.Context) { c.Status(http.StatusCreated) })
	api.GET("/missing", func(c *gin.Context) { problem.Abort(c, http.StatusNotFound, "no such order") })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	get, getBody := rawResponse(t, addr, http.MethodGet, "/api/orders/42")
	head, rest := rawResponse(t, addr, http.MethodHead, "/api/orders/42")
	if get.StatusCode != http.StatusOK || head.StatusCode != http.StatusOK {
		t.Fatalf("GET %d, HEAD %d, want 200 both", get.StatusCode, head.StatusCode)
	}
	if rest != "" {
		t.Errorf("HEAD sent a body: %q", rest)
	}
	if g, h := headers(get), headers(head); !equalHeaders(g, h) {
		t.Errorf("HEAD headers %v, want GET's %v", h, g)
	}
	if cl := head.Header.Get("Content-Length"); cl != "" && cl != get.Header.Get("Content-Length") {
		t.Errorf("HEAD Content-Length %s, GET's body is %d bytes", cl, len(getBody))
	}
	if head.Header.Get(RequestIDHeader) == "" {
		t.Error("HEAD answer lacks a request id")
	}
	if m := methods.get(); !slices.Equal(m, []string{http.MethodGet, http.MethodHead}) {
		t.Errorf("the handler saw %v, want GET then HEAD", m)
	}

	// A GET route's problem is HEAD's problem, without its body.
	getMissing, _ := rawResponse(t, addr, http.MethodGet, "/api/missing")
	headMissing, rest := rawResponse(t, addr, http.MethodHead, "/api/missing")
	if headMissing.StatusCode != http.StatusNotFound || headMissing.Header.Get("Content-Type") != problem.ContentType || rest != "" {
		t.Errorf("HEAD of a GET route's problem: %d %q body %q", headMissing.StatusCode, headMissing.Header.Get("Content-Type"), rest)
	}
	if getMissing.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/missing %d", getMissing.StatusCode)
	}

	// gin's redirect of a stray trailing slash is GET's, so HEAD's too.
	getSlash, _ := rawResponse(t, addr, http.MethodGet, "/api/orders/42/")
	headSlash, rest := rawResponse(t, addr, http.MethodHead, "/api/orders/42/")
	if getSlash.StatusCode != http.StatusMovedPermanently || headSlash.StatusCode != getSlash.StatusCode || headSlash.Header.Get("Location") != getSlash.Header.Get("Location") || rest != "" {
		t.Errorf("HEAD with a trailing slash: %d %q body %q, GET's %d %q", headSlash.StatusCode, headSlash.Header.Get("Location"), rest,
			getSlash.StatusCode, getSlash.Header.Get("Location"))
	}

	// Measured and logged once, as HEAD on the GET route's template.
	_, metrics := rawResponse(t, addr, http.MethodGet, "/metrics")
	want := `http_server_request_duration_seconds_count{http_request_method="HEAD",http_response_status_code="200",http_route="/api/orders/:id"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s:\n%.3000s", want, metrics)
	}
	if n := strings.Count(logs.String(), `"method":"HEAD","route":"/api/orders/:id"`); n != 1 {
		t.Errorf("%d access log lines for the HEAD, want 1:\n%s", n, logs)
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestHeadOnPostOnlyRouteStays405(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().POST("/orders", func(c *gin.Context) { c.Status(http.StatusCreated) })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, rest := rawResponse(t, srv.Listener.Addr().String(), http.MethodHead, "/orders")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != problem.ContentType || rest != "" {
		t.Errorf("HEAD on a POST route: %d %q body %q, want 405 problem without body", resp.StatusCode, resp.Header.Get("Content-Type"), rest)
	}
	if allow := resp.Header.Get("Allow"); allow != http.MethodPost {
		t.Errorf("Allow %q, want POST", allow)
	}
}

func TestAllowNamesHeadWhereGetIs(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().GET("/orders", func(c *gin.Context) { c.Status(http.StatusOK) })
	s.Router().POST("/orders", func(c *gin.Context) { c.Status(http.StatusCreated) })
	w := do(s.Handler(), http.MethodDelete, "/orders", nil)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", w.Code)
	}
	if allow := strings.Split(w.Header().Get("Allow"), ", "); !slices.Contains(allow, http.MethodHead) ||
		!slices.Contains(allow, http.MethodGet) || !slices.Contains(allow, http.MethodPost) {
		t.Errorf("Allow %v, want GET, POST and HEAD", allow)
	}
}

// A route registered for HEAD itself is not overridden by its GET twin.
func TestOwnHeadRouteWins(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().GET("/files/:name", func(c *gin.Context) { c.String(http.StatusOK, "content") })
	s.Router().HEAD("/files/:name", func(c *gin.Context) { c.Header("X-Own-Head", "yes"); c.Status(http.StatusNoContent) })
	w := do(s.Handler(), http.MethodHead, "/files/a", nil)
	if w.Code != http.StatusNoContent || w.Header().Get("X-Own-Head") != "yes" {
		t.Errorf("HEAD with its own route: %d %v", w.Code, w.Header())
	}
}

func TestHealthAndReadyAnswerHead(t *testing.T) {
	var dbDown atomic.Bool
	s, _ := newTestServer(t, Options{Checks: []Check{{Name: "postgres", Probe: func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}}})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, rest := rawResponse(t, addr, http.MethodHead, path)
		if resp.StatusCode != http.StatusOK || rest != "" {
			t.Errorf("HEAD %s: %d body %q, want 200 without body", path, resp.StatusCode, rest)
		}
	}
	dbDown.Store(true)
	resp, rest := rawResponse(t, addr, http.MethodHead, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || rest != "" {
		t.Errorf("HEAD /readyz with a failing check: %d body %q, want 503 without body", resp.StatusCode, rest)
	}
}
