package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// TestUndecodableQueryIs400NamingTheParameter: a query pair url.ParseQuery
// refuses is dropped by gin, which ignores that error, so a filter the client
// asked for vanished and its handler answered 200 as if none had been sent.
// The server answers 400 problem+json naming the parameter before any
// handler runs: a client error, not logged as a server error nor measured as
// a 5xx.
func TestUndecodableQueryIs400NamingTheParameter(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, logs := newTestServer(t, Options{Telemetry: p})
	var ran []string
	s.Router().GET("/orders", func(c *gin.Context) {
		ran = append(ran, c.Request.URL.RawQuery)
		c.JSON(http.StatusOK, c.Request.URL.Query())
	})

	for _, tt := range []struct{ query, field string }{
		{"status=%zz", "status"},
		{"status=PAID%2", "status"},
		{"status=PAID%", "status"},
		{"status=PAID;limit=1", "status"},
		{"limit=2&cursor=%G0", "cursor"},
		{"limit=1%&status=PAID", "limit"},
		{"order%zz=1", "order%zz"},
		{"a;b=1", "a"},
		{"=%zz", "query"},
		{"st%61tus=%zz", "status"},
	} {
		ran = nil
		w := do(s.Handler(), http.MethodGet, "/orders?"+tt.query, nil)
		if w.Code != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400: %s", tt.query, w.Code, w.Body)
			continue
		}
		d := decodeProblem(t, w)
		if len(d.Errors) != 1 || d.Errors[0].Field != tt.field {
			t.Errorf("?%s: errors %+v, want one naming %q", tt.query, d.Errors, tt.field)
		}
		if ran != nil {
			t.Errorf("?%s: the handler ran (saw %q)", tt.query, ran)
		}
		// HEAD is answered by the GET route, and refused alike.
		if w := do(s.Handler(), http.MethodHead, "/orders?"+tt.query, nil); w.Code != http.StatusBadRequest || ran != nil {
			t.Errorf("HEAD ?%s: status %d (handler ran: %v), want 400", tt.query, w.Code, ran != nil)
		}
	}
	// What ParseQuery takes reaches the handler unchanged.
	for _, q := range []string{"", "status=PAID&limit=2", "a=%41%2f%2F", "a", "a=&=b", "q=%E4%B8%AD+x"} {
		ran = nil
		if w := do(s.Handler(), http.MethodGet, "/orders?"+q, nil); w.Code != http.StatusOK || len(ran) != 1 {
			t.Errorf("?%s: status %d, handler ran %d times: %s", q, w.Code, len(ran), w.Body)
		}
	}

	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client's bad query logged an error:\n%s", logs)
	}
	metrics := do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String()
	if !strings.Contains(metrics, `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="400",http_route="/orders"} 10`) ||
		strings.Contains(metrics, `http_response_status_code="5`) {
		var series []string
		for line := range strings.Lines(metrics) {
			if strings.HasPrefix(line, "http_server_request_duration_seconds_count") {
				series = append(series, line)
			}
		}
		t.Errorf("the 400s are not measured as 400s on their route, or a 5xx was:\n%s", strings.Join(series, ""))
	}
}

// TestUndecodableQueryOnTheWire sends the request line as raw bytes, as a
// client that does not encode its query would: net/http hands the query on
// as sent, and the server refuses it. Nothing is logged above Debug: a
// client's bad query is no server's warning, and any client could write
// one line per request.
func TestUndecodableQueryOnTheWire(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	s.Router().GET("/orders", func(c *gin.Context) { c.JSON(http.StatusOK, c.Request.URL.Query()) })
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx)

	for _, tt := range []struct{ query, field string }{
		{"status=%zz&cursor=x", "status"},
		{"status=PAID;limit=1", "status"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte("GET /orders?" + tt.query + " HTTP/1.1\r\nHost: shanhai\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), `"field":"`+tt.field+`"`) {
			t.Errorf("?%s: status %d %s, want 400 naming %s", tt.query, resp.StatusCode, body.String(), tt.field)
		}
	}
	cancel()
	<-done
	if l := logs.String(); strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
		t.Errorf("a client's bad query logged a warning or an error:\n%s", l)
	}
}

// TestDecodableAgreesWithParseQuery: the scan decides exactly as
// url.ParseQuery does, so nothing it passes is dropped and nothing
// ParseQuery takes is refused.
func TestDecodableAgreesWithParseQuery(t *testing.T) {
	for _, q := range []string{"", "a", "a=1", "%", "%4", "%41", "%4g", "a=%zz", "a;b", ";", "a=1&&b=2", "%%41",
		"a=%E4%B8%AD", "a=%e4%b8%ad", "+", "a=%2", "a=1%2", "x=%20%", "k=v&k=%G1", "%41%", "a=\x00", "a=\xff"} {
		_, err := url.ParseQuery(q)
		if got := decodable(q); got != (err == nil) {
			t.Errorf("decodable(%q) = %v, ParseQuery error %v", q, got, err)
		}
	}
}

// TestUnknownParamsNamesEachSorted: every parameter not listed is named once,
// in the same order on every request, a nameless one as "query"; the
// listed ones (given twice too: that is pkg/page's to refuse) are not.
func TestUnknownParamsNamesEachSorted(t *testing.T) {
	for _, tt := range []struct {
		query string
		known []string
		want  string
	}{
		{"limit=1&cursor=x&order_id=y", []string{"order_id", "limit", "cursor"}, ""},
		{"limit=1&limit=2", []string{"limit"}, ""},
		{"page=2&orderId=y&limit=1&zz=&=x", []string{"limit"}, "orderId page query zz"},
		{"ORDER_ID=y", []string{"order_id"}, "ORDER_ID"},
		{"sku=CAM-1", nil, "sku"},
		{"", nil, ""},
	} {
		c, _ := gin.CreateTestContext(nil)
		c.Request = &http.Request{URL: &url.URL{RawQuery: tt.query}}
		var got []string
		for _, f := range UnknownParams(c, tt.known...) {
			got = append(got, f.Field)
			if !strings.HasPrefix(f.Detail, "is not a known parameter (") {
				t.Errorf("%q: detail %q", tt.query, f.Detail)
			}
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("UnknownParams(%q, %v) named %q; want %q", tt.query, tt.known, got, tt.want)
		}
	}
}
