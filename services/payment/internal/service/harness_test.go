package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

var (
	telemetryOnce sync.Once
	spans         = tracetest.NewSpanRecorder()
	provider      *telemetry.Provider
)

func setupTelemetry(t *testing.T) {
	telemetryOnce.Do(func() {
		var err error
		if provider, err = telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "payment-test", SpanProcessors: []sdktrace.SpanProcessor{spans}}); err != nil {
			t.Fatal(err)
		}
	})
}

type harness struct {
	t      *testing.T
	svc    *service.Service
	srv    *httptest.Server
	issuer *svctest.Issuer
	stream *svctest.Stream
	etcd   *clientv3.Client
	key    string // this test's dynamic settings key
	names  adapters.Names
}

// newHarness runs the real wiring against the test servers with a private
// stream, a private etcd settings key and a fresh database. tune adjusts the
// config before the service starts.
func newHarness(t *testing.T, tune func(*config.Config)) *harness {
	t.Helper()
	return newHarnessOptions(t, tune, func(*service.Options) {})
}

// newHarnessOptions is newHarness with setOptions adjusting the service's
// options too.
func newHarnessOptions(t *testing.T, tune func(*config.Config), setOptions func(*service.Options)) *harness {
	t.Helper()
	setupTelemetry(t)
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "PAYMENT")
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.OrdersSubject, Durable: "payment"}
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, Version: "test",
		DatabaseURL: testenv.Postgres(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t), EtcdEndpoints: testenv.Etcd(t),
		JWKSURL: issuer.URL, SettingsKey: "/shanhai/test/payment/" + svctest.Random(4), MaxDeliver: 10,
		ProviderLatencyMedian: time.Millisecond, ProviderLatencyP99: 5 * time.Millisecond, DeclineAboveCents: 100000,
	}
	if tune != nil {
		tune(&cfg)
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the service starts, so a failed start still
	// removes the private settings key.
	t.Cleanup(func() {
		_, _ = etcd.Delete(context.Background(), cfg.SettingsKey)
		etcd.Close()
	})
	opts := service.Options{JetStream: names, Telemetry: provider}
	setOptions(&opts)
	svc, err := service.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := svctest.Serve(t, svc, svc.Server.Handler())
	return &harness{t: t, svc: svc, srv: srv, issuer: issuer, stream: stream, etcd: etcd, key: cfg.SettingsKey, names: names}
}

// setSettings writes the dynamic settings to etcd and waits until the
// service sees them.
func (h *harness) setSettings(d config.Dynamic) {
	h.t.Helper()
	b, _ := json.Marshal(d)
	if _, err := h.etcd.Put(context.Background(), h.key, string(b)); err != nil {
		h.t.Fatal(err)
	}
	runtest.Eventually(h.t, 5*time.Second, "settings to apply", func() bool { return h.svc.Settings().FailureRate == d.FailureRate })
}

type orderEvent struct {
	OrderID    string `json:"order_id"`
	UserID     string `json:"user_id"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
}

// publishOrder publishes order.created as the bridge would: Kafka headers
// (CloudEvents, trace context) copied as NATS headers, plus kafka_*.
func (h *harness) publishOrder(o orderEvent, eventID string, parent *trace.SpanContext) {
	h.t.Helper()
	h.publishEvent("order.created", o, eventID, parent)
}

// publishEvent publishes one order event of type typ as the bridge would; an
// empty eventID keeps the envelope's fresh one.
func (h *harness) publishEvent(typ string, o orderEvent, eventID string, parent *trace.SpanContext) {
	h.t.Helper()
	env, err := event.New(typ, "/shanhai/order", o.OrderID, o)
	if err != nil {
		h.t.Fatal(err)
	}
	if eventID != "" {
		env.ID = eventID
	}
	h.publishRaw(svctest.Headers(env, parent), env.Data)
}

// publishRaw publishes data with hdr as the bridge would publish a record
// of shanhai.orders.
func (h *harness) publishRaw(hdr nats.Header, data []byte) {
	h.t.Helper()
	h.stream.Publish(h.t, h.names.Subject, "shanhai.orders", "", hdr, data)
}

// drained waits until the consumer has settled every message.
func (h *harness) drained() {
	h.t.Helper()
	h.stream.Drained(h.t, h.names.Durable, 30*time.Second)
}

type paymentRow struct {
	ID          string
	OrderID     string
	UserID      string
	Status      string
	Reason      string
	AmountCents int64
}

func (h *harness) payments(orderID string) []paymentRow {
	h.t.Helper()
	var rows []paymentRow
	if err := h.svc.DB.Table("payments").Where("order_id = ?", orderID).Find(&rows).Error; err != nil {
		h.t.Fatal(err)
	}
	return rows
}

func (h *harness) token(user string) string { return h.issuer.Token(h.t, user) }

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (h *harness) get(path, user string) reply {
	h.t.Helper()
	return h.do("GET", path, user)
}

// do sends a bodiless request as user ("" sends no token); hdr adds headers.
func (h *harness) do(method, path, user string, hdr ...string) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
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
