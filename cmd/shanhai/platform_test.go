package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildBinaries compiles the five production binaries the way `make run`
// does, so the test runs exactly what users run. They are built once per
// test run and shared (TestDeadPartKeepsItsLog and TestProcessesHappyPath
// both run them; only read, never changed): a second build compiles nothing
// new but links all five again, tens of seconds on a loaded 2-core machine.
func buildBinaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "shanhai-bin-")
		if built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", built.dir+string(filepath.Separator),
			"./services/user/cmd/user", "./services/order/cmd/order", "./services/payment/cmd/payment",
			"./bridge/cmd/bridge", "./gateway/cmd/gateway")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// built is buildBinaries' one build; TestMain removes its directory.
var built struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestEmbeddedHappyPath starts the embedded platform, all five parts hosted
// in this process (what make run does), and drives the happy path through
// the gateway: register, log in, list products, order with an
// Idempotency-Key (and retry it), and see the order PAID within 10 s.
func TestEmbeddedHappyPath(t *testing.T) {
	happyPath(t, "")
}

// TestProcessesHappyPath is the same with -processes: the five production
// binaries as child processes.
func TestProcessesHappyPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	happyPath(t, buildBinaries(t))
}

func happyPath(t *testing.T, bin string) {
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Setenv("PULSAR_URL", "") // the embedded run: leg A only
	p, err := Start(ctx, Options{BinDir: bin, DataDir: data})
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			if err := p.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
		if t.Failed() {
			dumpLogs(t, p.LogDir)
		}
	}()
	if p.Pulsar {
		t.Fatal("Pulsar leg on without PULSAR_URL")
	}
	for name, part := range p.Parts {
		if part.Hosted() != (bin == "") {
			t.Fatalf("%s hosted = %v with BinDir %q", name, part.Hosted(), bin)
		}
	}
	if got := p.Parts["bridge"].Env["BRIDGE_LEGS"]; got != "kafka-nats" {
		t.Fatalf("bridge legs = %q, want kafka-nats without Pulsar", got)
	}
	t.Logf("ready in %v", p.Ready)
	if mem, err := p.Measure(); err == nil {
		t.Logf("resident memory: %s", mem)
	}

	c := client{t: t, base: p.Gateway()}
	email := fmt.Sprintf("ada-%d@example.com", time.Now().UnixNano())
	c.do("POST", "/api/v1/users", "", nil, map[string]any{"email": email, "password": "correct horse battery", "name": "Ada"}, http.StatusCreated, nil)
	var session struct {
		AccessToken string `json:"access_token"`
	}
	c.do("POST", "/api/v1/sessions", "", nil, map[string]any{"email": email, "password": "correct horse battery"}, http.StatusCreated, &session)
	if session.AccessToken == "" {
		t.Fatal("log in gave no access_token")
	}
	var catalog struct {
		Products []struct {
			SKU        string `json:"sku"`
			PriceCents int64  `json:"price_cents"`
		} `json:"products"`
	}
	c.do("GET", "/api/v1/products", session.AccessToken, nil, nil, http.StatusOK, &catalog)
	if len(catalog.Products) == 0 {
		t.Fatal("empty catalogue")
	}
	// The cheapest product stays under the payment service's decline rule.
	sku := catalog.Products[0]
	for _, pr := range catalog.Products {
		if pr.PriceCents < sku.PriceCents {
			sku = pr
		}
	}
	key := fmt.Sprintf("embedded-%d", time.Now().UnixNano())
	body := map[string]any{"items": []map[string]any{{"sku": sku.SKU, "quantity": 1}}}
	var order, replay struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	c.do("POST", "/api/v1/orders", session.AccessToken, map[string]string{"Idempotency-Key": key}, body, http.StatusCreated, &order)
	if order.ID == "" || order.Status != "PENDING" {
		t.Fatalf("created order = %+v, want an id and PENDING", order)
	}
	c.do("POST", "/api/v1/orders", session.AccessToken, map[string]string{"Idempotency-Key": key}, body, http.StatusCreated, &replay)
	if replay.ID != order.ID {
		t.Fatalf("retry with the same Idempotency-Key made order %s, want %s", replay.ID, order.ID)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		var got struct {
			Status string `json:"status"`
		}
		c.do("GET", "/api/v1/orders/"+order.ID, session.AccessToken, nil, nil, http.StatusOK, &got)
		if got.Status == "PAID" {
			break
		}
		if got.Status != "PENDING" {
			t.Fatalf("order %s became %s, want PAID", order.ID, got.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s still %s after 10 s", order.ID, got.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}

	runBannerDemo(t, p)

	stopped = true
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Hosted, the services' wait after leaving discovery ends when the gateway has stopped, the only part that routes
	// by it; their production binaries cannot know that and wait the delay out.
	waits := bin != ""
	checkStopOrder(t, p.LogDir, waits)
	wantEndedBy := "callers stopped"
	if waits {
		wantEndedBy = "delay"
	}
	checkDeregisterDelay(t, p.LogDir, wantEndedBy)
}

// checkDeregisterDelay wants every service registered in discovery to log what ended its wait after deregistering.
func checkDeregisterDelay(t *testing.T, dir, endedBy string) {
	t.Helper()
	for _, name := range []string{"user", "order", "payment"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		line := ""
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"step":"deregister delay"`) {
				line = l
				break
			}
		}
		if !strings.Contains(line, `"ended_by":"`+endedBy+`"`) {
			t.Errorf("%s's deregister delay: %q, want ended_by %q", name, line, endedBy)
		}
	}
}

// runBannerDemo pastes the demo the banner prints into bash, as a newcomer
// does, and wants its last line, the order's status, to be PAID.
func runBannerDemo(t *testing.T, p *Platform) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the banner's demo needs %s: %v", tool, err)
		}
	}
	var banner bytes.Buffer
	Banner(&banner, p, false, Memory{}, errors.New("not measured"))
	_, script, ok := strings.Cut(banner.String(), "Try it (bash; needs curl and jq):\n")
	if !ok {
		t.Fatalf("banner has no demo:\n%s", banner.String())
	}
	script, _, _ = strings.Cut(script, "\n\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-eo", "pipefail", "-c", script).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || lines[len(lines)-1] != "PAID" {
		t.Fatalf("banner demo: %v, want its last line PAID; script:\n%s\noutput:\n%s", err, script, out)
	}
	checkBannerMetrics(t, banner.String())
}

// checkBannerMetrics fetches every /metrics URL the banner lists: each must
// answer with Prometheus text (the gateway's is on its admin listener, so a
// URL on its public port would be a 404).
func checkBannerMetrics(t *testing.T, banner string) {
	t.Helper()
	_, list, _ := strings.Cut(banner, "\nMetrics: ")
	urls := 0
	for line := range strings.Lines(list) {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasSuffix(f[1], "/metrics") {
			continue
		}
		urls++
		resp, err := http.Get(f[1])
		if err != nil {
			t.Errorf("banner's metrics URL for %s: %v", f[0], err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("# TYPE ")) {
			t.Errorf("banner's metrics URL for %s (%s): %s, %d bytes of no Prometheus text", f[0], f[1], resp.Status, len(body))
		}
	}
	if urls != len(Names) {
		t.Errorf("banner lists %d metrics URLs, want one per part (%d):\n%s", urls, len(Names), banner)
	}
}

// checkStopOrder reads from the parts' logs when each began and finished stopping. The gateway, the only door, stops
// first: it has stopped before any other part begins. The others then stop together, so where the services
// registered in discovery wait a second after deregistering (waits), that second is spent once: every part began to
// stop before any of those services had drained. One by one, each service began only after the one before it had
// finished, and Ctrl-C took the three waits one after another. Without the wait a service may drain within a
// millisecond or two of its stop, before a busy machine has run the goroutine that stops the next part, so "together"
// is only checked where it saves the waits.
func checkStopOrder(t *testing.T, dir string, waits bool) {
	t.Helper()
	gateway := logTime(t, dir, "gateway", `"msg":"gateway stopped"`) // fasthttp, not pkg/server
	var drained time.Time                                            // the first registered service's drain
	for _, name := range []string{"user", "order", "payment"} {
		if at := logTime(t, dir, name, `"msg":"shutdown step done"`, `"step":"drain"`); drained.IsZero() || at.Before(drained) {
			drained = at
		}
	}
	for _, name := range Names {
		if name == "gateway" {
			continue
		}
		at := logTime(t, dir, name, `"msg":"shutdown requested"`)
		if !at.After(gateway) {
			t.Errorf("%s began stopping at %s, before the gateway had stopped (%s)", name, at.Format(time.RFC3339Nano), gateway.Format(time.RFC3339Nano))
		}
		if waits && !at.Before(drained) {
			t.Errorf("%s began stopping at %s, after a service had waited out its deregistration and drained (%s): the parts stopped one by one", name, at.Format(time.RFC3339Nano), drained.Format(time.RFC3339Nano))
		}
	}
}

// logTime is the time of the first line of the part's log that holds every marker.
func logTime(t *testing.T, dir, name string, markers ...string) time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
lines:
	for _, line := range strings.Split(string(b), "\n") {
		for _, m := range markers {
			if !strings.Contains(line, m) {
				continue lines
			}
		}
		var rec struct{ Time time.Time }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s.log: %v", name, err)
		}
		return rec.Time
	}
	t.Fatalf("%s.log has no line with %q", name, markers)
	return time.Time{}
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, token string, headers map[string]string, in any, want int, out any) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("--- %s (last lines)\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}

// Every part has its own stop grace: a part missing from stopGrace would be
// given none, and Stop would give up on it (kill its process) at once.
func TestEveryPartHasAStopGrace(t *testing.T) {
	for _, name := range Names {
		if stopGrace[name] < 15*time.Second {
			t.Errorf("%s: stop grace %v, want its stop budget (at least the 15 s every part had)", name, stopGrace[name])
		}
	}
	// payment's budget at the default SHUTDOWN_TIMEOUT (10 s), as
	// deploy/stopgrace_test.go's stopBudget adds it up since 4c16049: leaving
	// etcd 1 s and the wait after it 1 s, the drain and the consumer's hook
	// 10 s each, the telemetry flush's floor 1 s, then 5 s each for the last
	// delivery's try, its answer, a dead letter and the relay's round, and
	// the 2 s margin. Written out, not read: stopBudget is a test function
	// of another module, which this one does not require.
	const paymentBudget = 45 * time.Second
	if stopGrace["payment"] < paymentBudget {
		t.Errorf("payment: stop grace %v, want its %v budget (deploy/stopgrace_test.go)", stopGrace["payment"], paymentBudget)
	}
}
