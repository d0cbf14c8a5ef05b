package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// otlpMetrics is an OTLP/HTTP metrics receiver that keeps every export request it decodes.
type otlpMetrics struct {
	mu   sync.Mutex
	reqs []*collectormetrics.ExportMetricsServiceRequest
}

func (o *otlpMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var req collectormetrics.ExportMetricsServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if r.URL.Path != "/v1/metrics" || err != nil {
		http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.reqs = append(o.reqs, &req)
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// series keys a data point by metric name and its sorted attributes, as the Prometheus text names a sample.
func series(name string, attrs map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		fmt.Fprintf(&b, " %s=%q", k, attrs[k])
	}
	return b.String()
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// TestOTLPExportMatchesMetrics runs the agent as main does, with OTLP export on, drives requests to a probed target,
// stops it, and checks that the one export Shutdown sends carries service.name shanhai-bpf-agent and every
// shanhai_bpf_ counter and histogram count of the last /metrics scrape, exactly.
func TestOTLPExportMatchesMetrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the agent's OTLP test loads eBPF programs: run it as root")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "target")
	if b, err := exec.Command("go", "build", "-o", bin, "../../testdata/target").CombinedOutput(); err != nil {
		t.Fatalf("build target: %v\n%s", err, b)
	}
	rx := &otlpMetrics{}
	srv := httptest.NewServer(rx)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000") // no periodic export in the test: only Shutdown's
	t.Setenv("OTEL_SERVICE_NAME", "")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := Config{Addr: addr, Targets: bin, ScanInterval: 50 * time.Millisecond, Grace: time.Minute, HTTPProbe: "uprobe", MaxExecutables: 16}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler)) }()

	cmd := exec.Command(bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + strings.TrimSpace(line)

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %s", what)
			}
		}
	}
	// Probed once target_info lists the target's pid with probes on it.
	pidLabel := fmt.Sprintf(`pid="%d"`, cmd.Process.Pid)
	poll("target not probed", func() bool {
		_, body := get("http://" + addr + "/metrics")
		return strings.Contains(body, "shanhai_bpf_target_info{") && strings.Contains(body, pidLabel) && strings.Contains(body, `probes="`)
	})
	const n = 25
	for range n {
		if code, body := get(base + "/work?status=201"); code != http.StatusCreated {
			t.Fatalf("GET /work: %d %s", code, body)
		}
	}
	var scraped map[string]*dto.MetricFamily
	poll(fmt.Sprintf("/metrics never counted %d GET 201", n), func() bool {
		_, body := get("http://" + addr + "/metrics")
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		scraped = fams
		for _, m := range fams["shanhai_bpf_http_server_request_duration_seconds"].GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["method"] == "GET" && l["status"] == "201" && m.GetHistogram().GetSampleCount() == n {
				return true
			}
		}
		return false
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if len(rx.reqs) != 1 {
		t.Fatalf("%d OTLP export requests, want the one Shutdown sends", len(rx.reqs))
	}
	got := map[string]float64{} // counter values and histogram counts, by series
	for _, rm := range rx.reqs[0].GetResourceMetrics() {
		if svc := attrMap(rm.GetResource().GetAttributes())["service.name"]; svc != serviceName {
			t.Errorf("resource service.name %q, want %q", svc, serviceName)
		}
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				for _, dp := range m.GetSum().GetDataPoints() {
					got[series(m.GetName(), attrMap(dp.GetAttributes()))] = dp.GetAsDouble() + float64(dp.GetAsInt())
				}
				for _, dp := range m.GetHistogram().GetDataPoints() {
					got[series(m.GetName(), attrMap(dp.GetAttributes()))] = float64(dp.GetCount())
				}
			}
		}
	}
	checked := 0
	for name, fam := range scraped {
		if !strings.HasPrefix(name, "shanhai_bpf_") {
			continue
		}
		for _, m := range fam.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			var want float64
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				want = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				want = float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			key := series(name, l)
			checked++
			if v, ok := got[key]; !ok || v != want {
				t.Errorf("%s: /metrics %v, OTLP %v (present %v)", key, want, v, ok)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no shanhai_bpf_ counter or histogram on /metrics")
	}
}
