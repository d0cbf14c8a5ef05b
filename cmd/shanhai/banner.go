package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/redact"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Banner prints what a newcomer needs: where the gateway is, a demo to paste,
// where metrics, traces and logs go, and which parts are off.
func Banner(w io.Writer, p *Platform, native bool, mem Memory, memErr error) {
	gw := p.Gateway()
	mode := "embedded Kafka (kfake), NATS JetStream, etcd, Redis (miniredis) and SQLite"
	if native {
		mode = "the scripts/deps.sh servers"
	}
	fmt.Fprintf(w, "Shanhai is up on %s, ready in %d ms (%s).\n", gw, p.Ready.Milliseconds(), mode)
	if p.LeftPending > 0 {
		fmt.Fprintln(w, leftPendingWarning(p.LeftPending))
	}
	if memErr == nil {
		fmt.Fprintf(w, "Resident memory: %s.\n", mem)
	}
	if p.Pulsar {
		fmt.Fprintf(w, "Pulsar leg on: the bridge archives events to %s.\n", redact.URL(p.Env["PULSAR_URL"]))
	} else {
		fmt.Fprintln(w, "Pulsar leg off: Pulsar has no embeddable server and PULSAR_URL is not set, so the bridge runs Kafka → NATS only.")
	}
	fmt.Fprintln(w, "\nTry it (bash; needs curl and jq):")
	fmt.Fprint(w, strings.Replace(demo, "$GW", gw, 1))
	fmt.Fprintln(w, "\nThe same KEY again replays the order: the same answer, with Idempotent-Replayed: true.")
	if p.Telemetry != nil {
		fmt.Fprintln(w, "\nMetrics: Prometheus text of every part (all five run in this process and serve its one registry; the gateway on its admin address):")
	} else {
		fmt.Fprintln(w, "\nMetrics: Prometheus text of every binary (the gateway on its admin address):")
	}
	for _, name := range Names {
		fmt.Fprintf(w, "  %-8s %s\n", name, p.Parts[name].MetricsURL())
	}
	switch ep, off := telemetry.TracesEndpoint(); {
	case off != "":
		fmt.Fprintf(w, "Traces: off (%s).\n", off)
	case ep != "":
		fmt.Fprintf(w, "Traces: exported over OTLP to %s.\n", redact.URL(ep))
	default:
		fmt.Fprintln(w, "Traces: off; set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318 of a collector or Jaeger) and restart to export them.")
	}
	fmt.Fprintf(w, "Logs: %s/<part>.log (JSON, with trace_id).\n", p.LogDir)
	fmt.Fprintln(w, "Servers (for the workshop's labs):")
	// A password is shown as xxxxx here too: the embedded servers have
	// none, and a PULSAR_URL that has one came from the environment, where
	// the reader has it already.
	for _, k := range []string{"ETCD_ENDPOINTS", "KAFKA_BROKERS", "NATS_URL", "REDIS_URL", "PULSAR_URL"} {
		if v := p.Env[k]; v != "" {
			fmt.Fprintf(w, "  export %s=%s\n", k, redact.URL(v))
		}
	}
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}

// demo is the happy path through the gateway: register, log in, list
// products, order with an Idempotency-Key, poll until PAID. Its key is 16
// random bytes in hex from od and /dev/urandom, which Linux and macOS both
// have (not /proc's uuid, which only Linux has). It holds no # comment: it
// is pasted into an interactive shell, and an interactive zsh (macOS's
// default) does not take # as one, so a comment after KEY=... left KEY
// unset there; what a comment would say follows it in Banner.
const demo = `  GW=$GW
  curl -s -XPOST $GW/api/v1/users -H 'content-type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}'
  TOKEN=$(curl -s -XPOST $GW/api/v1/sessions -H 'content-type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery"}' | jq -r .access_token)
  curl -s $GW/api/v1/products -H "authorization: Bearer $TOKEN" | jq
  SKU=$(curl -s $GW/api/v1/products -H "authorization: Bearer $TOKEN" | jq -r '.products[0].sku')
  KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  ORDER=$(curl -s -XPOST $GW/api/v1/orders -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -H "Idempotency-Key: $KEY" \
    -d "{\"items\":[{\"sku\":\"$SKU\",\"quantity\":1}]}" | jq -r .id)
  for i in $(seq 40); do
    STATUS=$(curl -s $GW/api/v1/orders/$ORDER -H "authorization: Bearer $TOKEN" | jq -r .status); echo $STATUS
    [ "$STATUS" != PENDING ] && break; sleep 0.25
  done
`
