package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

var (
	telemetryOnce sync.Once
	spans         = tracetest.NewSpanRecorder()
	provider      *telemetry.Provider
)

// setupTelemetry installs real OTel providers once per test binary, with a
// span recorder so tests can check that traces continue across hops.
func setupTelemetry(t testing.TB) {
	telemetryOnce.Do(func() {
		var err error
		if provider, err = telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "order-test", SpanProcessors: []sdktrace.SpanProcessor{spans}}); err != nil {
			t.Fatal(err)
		}
	})
}

type harness struct {
	t      testing.TB
	svc    *service.Service
	srv    *httptest.Server
	issuer *svctest.Issuer
	stream *svctest.Stream
	names  adapters.Names
}

// newHarness runs the real service wiring against the test servers: a fresh
// PostgreSQL database, Redis, NATS with a private stream and Kafka, with
// tokens signed by a test key whose JWKS an httptest server publishes. tune
// adjusts the options before the service starts.
func newHarness(t testing.TB, tune ...func(*service.Options)) *harness {
	t.Helper()
	return newHarnessConfig(t, func(*config.Config) {}, tune...)
}

// newHarnessConfig is newHarness with setConfig adjusting the configuration
// first.
func newHarnessConfig(t testing.TB, setConfig func(*config.Config), tune ...func(*service.Options)) *harness {
	t.Helper()
	setupTelemetry(t)
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "ORDER")
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.PaymentsSubject, Durable: "order"}
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, Version: "test",
		DatabaseURL: testenv.Postgres(t), RedisURL: testenv.Redis(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
		JWKSURL: issuer.URL, CatalogCacheTTL: time.Minute,
	}
	setConfig(&cfg)
	opts := service.Options{JetStream: names, Telemetry: provider}
	for _, f := range tune {
		f(&opts)
	}
	svc, err := service.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := svctest.Serve(t, svc, svc.Server.Handler())
	return &harness{t: t, svc: svc, srv: srv, issuer: issuer, stream: stream, names: names}
}

func (h *harness) token(user string) string { return h.issuer.Token(h.t, user) }

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problemFields returns the field names of a problem+json reply.
func (r reply) problemFields(t *testing.T) []string {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q for %d %s", ct, r.Status, r.Body)
	}
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	r.json(t, &p)
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// do sends a request as user ("" sends no token); hdr adds headers.
func (h *harness) do(method, path, user, body string, hdr ...string) reply {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+h.token(user))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: bytes.TrimSpace(b)}
}

type orderView struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	TotalCents    int64  `json:"total_cents"`
	PaymentID     string `json:"payment_id"`
	FailureReason string `json:"failure_reason"`
	Items         []struct {
		SKU            string `json:"sku"`
		Quantity       int    `json:"quantity"`
		UnitPriceCents int64  `json:"unit_price_cents"`
	} `json:"items"`
}

// createOrder places an order for user and returns it.
func (h *harness) createOrder(user, body string) orderView {
	h.t.Helper()
	r := h.do("POST", "/api/v1/orders", user, body, "Idempotency-Key", svctest.Random(8))
	if r.Status != http.StatusCreated {
		h.t.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var o orderView
	r.json(h.t, &o)
	return o
}

func (h *harness) getOrder(user, id string) orderView {
	h.t.Helper()
	r := h.do("GET", "/api/v1/orders/"+id, user, "")
	if r.Status != http.StatusOK {
		h.t.Fatalf("get order: %d %s", r.Status, r.Body)
	}
	var o orderView
	r.json(h.t, &o)
	return o
}
