package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A registration reaches Kafka topic shanhai.users through the outbox relay
// as a CloudEvents binary-mode message keyed by the user id, carrying the
// trace of the HTTP request that caused it.
func TestRegisteredEventOnKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	tp, err := telemetry.Setup(t.Context(), telemetry.Options{ServiceName: "user-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	h := newHarness(t, map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ",")})
	if err := h.svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}

	traceID := fmt.Sprintf("%032x", time.Now().UnixNano())
	email := uniqEmail()
	r := h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"Kafka"}`, email, password),
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", r.Code, r.Body)
	}
	id := r.json(t)["id"].(string)

	rd := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: "shanhai.users", GroupID: "user-test-" + id,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("no user.registered for %s on shanhai.users: %v", id, err)
		}
		if string(m.Key) != id {
			continue
		}
		hdr := map[string]string{}
		for _, h := range m.Headers {
			hdr[h.Key] = string(h.Value)
		}
		for k, want := range map[string]string{"ce_specversion": "1.0", "ce_type": "user.registered", "ce_source": "/shanhai/user",
			"ce_subject": id, "content-type": "application/json"} {
			if hdr[k] != want {
				t.Errorf("header %s = %q, want %q", k, hdr[k], want)
			}
		}
		if hdr["ce_id"] == "" || hdr["ce_time"] == "" {
			t.Errorf("ce_id/ce_time missing: %v", hdr)
		}
		if !strings.HasPrefix(hdr["traceparent"], "00-"+traceID+"-") {
			t.Errorf("traceparent = %q, want the request's trace %s", hdr["traceparent"], traceID)
		}
		var data map[string]string
		if err := json.Unmarshal(m.Value, &data); err != nil || data["user_id"] != id || data["email"] != email || len(data) != 2 {
			t.Errorf("value = %s (%v)", m.Value, err)
		}
		return
	}
}
