package proxy

import (
	"bufio"
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/gateway/internal/metrictest"
)

// The fasthttp transport's cap on client connections (sockio.Cap) refused
// unmetered, and logged a line without the count since the last one: an
// operator on that transport (every TLS gateway) saw a full gateway only
// in a WARN every 10 s. Its connections and refusals are exported under
// the event loop's names, and its lines count as the loop's do.
func TestClientConnsAreExported(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	var refused Refusals
	open := int64(3)
	reg, err := ExportClientConns(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), func() int64 { return open }, &refused)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		refused.Note(log, "connection refused", "env", "GATEWAY_LOOP_MAX_CONNS")
	}
	if lines := strings.Count(logs.String(), "\n"); lines != 1 || !strings.Contains(logs.String(), "refused=1") {
		t.Errorf("three refusals within %v logged %d lines, want one saying refused=1:\n%s", RefusalWarnEvery, lines, logs.String())
	}

	got := metrictest.Int64s(t, reader)
	if got["shanhai.gateway.loop.conns"] != 3 || got["shanhai.gateway.loop.conns.refusals"] != 3 {
		t.Errorf("exported %v, want 3 connections held and 3 refused", got)
	}
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if got := metrictest.Int64s(t, reader); len(got) != 0 {
		t.Errorf("still exported after Unregister: %v", got)
	}
}

// The answer to a connection over the cap is made once, at the start: a
// Date in it told every client, for the gateway's whole life, the time it
// started (a 5xx may go without one, RFC 9110 §6.6.1). It is the 503
// gateway-busy problem otherwise, and closes the connection.
func TestConnsFullAnswerHasNoStaleDate(t *testing.T) {
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(bytes.NewReader(ConnsFullAnswer()))); err != nil {
		t.Fatal(err)
	}
	if d := resp.Header.Peek("Date"); d != nil {
		t.Errorf("the answer made once says Date: %s", d)
	}
	if resp.StatusCode() != 503 || !bytes.Contains(resp.Body(), []byte(`problems/gateway-busy"`)) ||
		len(resp.Header.Peek("Retry-After")) == 0 || !resp.ConnectionClose() {
		t.Errorf("not the 503 gateway-busy with Retry-After and Connection: close:\n%s", ConnsFullAnswer())
	}
}
