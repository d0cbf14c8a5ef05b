package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/carrier"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
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
	signer *auth.Signer
	js     jetstream.JetStream
	etcd   *clientv3.Client
	key    string // this test's dynamic settings key
	names  adapters.Names
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newHarness runs the real wiring against the test servers with a private
// stream, a private etcd settings key and a fresh database. tune adjusts the
// config before the service starts.
func newHarness(t *testing.T, tune func(*config.Config)) *harness {
	t.Helper()
	setupTelemetry(t)
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := auth.NewSigner(key)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signer.JWKS())
	}))
	t.Cleanup(jwks.Close)

	suffix := randomHex(4)
	prefix := "t" + suffix + "."
	names := adapters.Names{Stream: "TEST_PAYMENT_" + suffix, StreamSubjects: prefix + "shanhai.>", Subject: prefix + adapters.OrdersSubject, Durable: "payment"}
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, LogLevel: "info", Version: "test",
		DatabaseURL: testenv.Postgres(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t), EtcdEndpoints: testenv.Etcd(t),
		JWKSURL: jwks.URL, SettingsKey: "/shanhai/test/payment/" + suffix, MaxDeliver: 10,
		ProviderLatencyMedian: time.Millisecond, ProviderLatencyP99: 5 * time.Millisecond, DeclineAboveCents: 100000,
	}
	if tune != nil {
		tune(&cfg)
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	// Registered before the service starts, so a failed start still
	// removes the private stream.
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), names.Stream)
		nc.Close()
		_, _ = etcd.Delete(context.Background(), cfg.SettingsKey)
		etcd.Close()
	})
	ctx := context.Background()
	svc, err := service.New(ctx, cfg, service.Options{JetStream: names, Telemetry: provider})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Server.Handler())
	t.Cleanup(srv.Close)
	return &harness{t: t, svc: svc, srv: srv, signer: signer, js: js, etcd: etcd, key: cfg.SettingsKey, names: names}
}

// setSettings writes the dynamic settings to etcd and waits until the
// service sees them.
func (h *harness) setSettings(d config.Dynamic) {
	h.t.Helper()
	b, _ := json.Marshal(d)
	if _, err := h.etcd.Put(context.Background(), h.key, string(b)); err != nil {
		h.t.Fatal(err)
	}
	eventually(h.t, 5*time.Second, "settings to apply", func() bool { return h.svc.Settings().FailureRate == d.FailureRate })
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
	hdr := nats.Header{}
	for k, v := range env.Headers() {
		hdr[k] = []string{v}
	}
	if parent != nil {
		carrier.Inject(trace.ContextWithSpanContext(context.Background(), *parent), carrier.NATS(hdr))
	}
	h.publishRaw(hdr, env.Data)
}

func (h *harness) publishRaw(hdr nats.Header, data []byte) {
	h.t.Helper()
	hdr["kafka_topic"] = []string{"shanhai.orders"}
	hdr["Nats-Msg-Id"] = []string{"shanhai.orders/0/" + uuid.NewString()}
	if _, err := h.js.PublishMsg(context.Background(), &nats.Msg{Subject: h.names.Subject, Header: hdr, Data: data}); err != nil {
		h.t.Fatal(err)
	}
}

// drained waits until the consumer has settled every message.
func (h *harness) drained() {
	h.t.Helper()
	ctx := context.Background()
	eventually(h.t, 30*time.Second, "consumer to settle every message", func() bool {
		s, err := h.js.Stream(ctx, h.names.Stream)
		if err != nil {
			return false
		}
		si, err := s.Info(ctx)
		if err != nil {
			return false
		}
		c, err := h.js.Consumer(ctx, h.names.Stream, h.names.Durable)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.AckFloor.Stream >= si.State.LastSeq
	})
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

func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (h *harness) token(user string) string {
	h.t.Helper()
	tok, err := h.signer.Sign(user, time.Minute)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (h *harness) get(path, user string) reply {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+h.token(user))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: bytes.TrimSpace(b)}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
