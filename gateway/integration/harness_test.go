// Package integration runs the gateway binary against real etcd and Redis
// (scripts/deps.sh up redis etcd) and real upstream processes
// (./testupstream), all built by TestMain.
package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

var bin string // directory with the built gateway and testupstream

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gwit")
	if err != nil {
		panic(err)
	}
	for _, b := range [][2]string{{"gateway", "../cmd/gateway"}, {"testupstream", "./testupstream"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[0], err)
			os.Exit(1)
		}
	}
	bin = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 && os.Getenv("GATEWAY_TRANSPORT") == "" {
		code = runAgain("fasthttp")
	}
	os.Exit(code)
}

// transport is the gateway transport under test: GATEWAY_TRANSPORT, which
// the gateway processes inherit (empty: the default, auto: the event loop
// without TLS, fasthttp with it).
func transport() string {
	if t := os.Getenv("GATEWAY_TRANSPORT"); t != "" {
		return t
	}
	return "auto"
}

// runAgain runs this test binary once more with GATEWAY_TRANSPORT=t, so
// that one "go test" proves every behaviour on both transports (the first
// run used the default, the event loop). Setting
// GATEWAY_TRANSPORT yourself runs just that one.
func runAgain(t string) int {
	var args []string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "-test.testlogfile") { // the parent's cache log
			args = append(args, a)
		}
	}
	fmt.Fprintf(os.Stderr, "integration: again with GATEWAY_TRANSPORT=%s\n", t)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GATEWAY_TRANSPORT="+t)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: GATEWAY_TRANSPORT=%s: %v\n", t, err)
		return 1
	}
	return 0
}

// world is one test's servers: its own service names, dynamic config key and
// token issuer, so tests never see each other's (or a developer's) state.
type world struct {
	t      *testing.T
	etcd   []string
	redis  string
	svc    string // the upstream service every route points at
	dynKey string
	signer *auth.Signer
	jwks   *httptest.Server
	client *http.Client
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, etcd: testenv.Etcd(t), redis: testenv.Redis(t)}
	suffix := randHex(4)
	w.svc = "gwt-" + strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "")) + "-" + suffix
	w.dynKey = "gateway-test-" + suffix
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w.signer = auth.NewSigner(key)
	w.jwks = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(w.signer.JWKS())
	}))
	t.Cleanup(w.jwks.Close)
	w.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(func() { w.etcdClient().Delete(context.Background(), "/shanhai/config/"+w.dynKey) })
	return w
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (w *world) token(sub string) string {
	tok, err := w.signer.Sign(sub, 10*time.Minute)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

func (w *world) etcdClient() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: w.etcd, DialTimeout: 5 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { cli.Close() })
	return cli
}

// setDynamic writes the gateway's dynamic config document.
func (w *world) setDynamic(doc string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.etcdClient().Put(ctx, "/shanhai/config/"+w.dynKey, doc); err != nil {
		w.t.Fatal(err)
	}
}

type upstreamProc struct {
	w    *world
	id   string
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startUpstream runs a testupstream registered as w.svc at version.
func (w *world) startUpstream(id, version string) *upstreamProc {
	w.t.Helper()
	cmd := exec.Command(filepath.Join(bin, "testupstream"), "-service", w.svc, "-version", version, "-id", id,
		"-etcd", strings.Join(w.etcd, ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	u := &upstreamProc{w: w, id: id, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(u.done) }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		w.t.Fatalf("upstream %s did not start: %q %v", id, line, err)
	}
	u.Addr = strings.TrimSpace(strings.TrimPrefix(line, "READY "))
	w.t.Cleanup(u.kill)
	return u
}

// stop ends the upstream gracefully: it deregisters, then exits.
func (u *upstreamProc) stop() {
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		u.w.t.Fatalf("upstream %s did not stop", u.id)
	}
}

func (u *upstreamProc) kill() {
	_ = u.cmd.Process.Kill()
	<-u.done
}

func (u *upstreamProc) hits() int {
	u.w.t.Helper()
	resp, err := http.Get("http://" + u.Addr + "/_hits")
	if err != nil {
		u.w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(string(b))
	if err != nil {
		u.w.t.Fatalf("hits: %q", b)
	}
	return n
}

// control sets the upstream's answer for later requests (status 0 = 200).
func (u *upstreamProc) control(status int, sleep time.Duration) {
	u.w.t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://%s/_control?status=%d&sleep=%s", u.Addr, status, sleep), "", nil)
	if err != nil {
		u.w.t.Fatal(err)
	}
	resp.Body.Close()
}

type seenRequest struct {
	Instance string              `json:"instance"`
	Version  string              `json:"version"`
	Method   string              `json:"method"`
	URI      string              `json:"uri"`
	Header   map[string][]string `json:"header"`
	Body     int                 `json:"body_bytes"`
}

// seen returns what the upstream received for a request id, or false.
func (u *upstreamProc) seen(id string) (seenRequest, bool) {
	u.w.t.Helper()
	resp, err := http.Get("http://" + u.Addr + "/_seen?id=" + id)
	if err != nil {
		u.w.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return seenRequest{}, false
	}
	var s seenRequest
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		u.w.t.Fatal(err)
	}
	return s, true
}

type gatewayProc struct {
	URL   string
	Addr  string
	Admin string // the admin listener's URL (pprof, /metrics): never the public address
	Log   string // the file the gateway logs to
	cmd   *exec.Cmd
	done  chan struct{}
}

// startGateway runs the gateway binary routing every API prefix to w.svc,
// with env overriding the test defaults.
func (w *world) startGateway(env ...string) *gatewayProc {
	w.t.Helper()
	addr, admin := freeAddr(w.t), freeAddr(w.t)
	cmd := w.gatewayCommand(addr, admin, env...)
	logf, err := os.Create(filepath.Join(w.t.TempDir(), "gateway.log"))
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	scheme, probe := "http", http.DefaultClient
	for _, e := range env {
		if strings.HasPrefix(e, "TLS_CERT_FILE=") {
			// Readiness only; the TLS test checks certificates itself.
			scheme = "https"
			probe = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
		}
	}
	g := &gatewayProc{URL: scheme + "://" + addr, Addr: addr, Admin: "http://" + admin, Log: logf.Name(), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(g.done) }()
	w.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
		if w.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			w.t.Logf("gateway log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := probe.Get(g.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g
			}
		}
		select {
		case <-g.done:
			b, _ := os.ReadFile(logf.Name())
			w.t.Fatalf("gateway exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gatewayCommand is the gateway binary on addr and admin, routing every API
// prefix to w.svc, with env overriding the test defaults; not started.
func (w *world) gatewayCommand(addr, admin string, env ...string) *exec.Cmd {
	routes := fmt.Sprintf("/api/v1/orders=%[1]s,/api/v1/users=%[1]s,/api/v1/sessions=%[1]s,/api/v1/products=%[1]s", w.svc)
	cmd := exec.Command(filepath.Join(bin, "gateway"))
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+addr, "ADMIN_ADDR="+admin, "ETCD_ENDPOINTS="+strings.Join(w.etcd, ","), "DISCOVERY_STATIC=",
		"REDIS_URL="+w.redis, "JWKS_URL="+w.jwks.URL, "GATEWAY_ROUTES="+routes, "GATEWAY_DYNAMIC_KEY="+w.dynKey, "GATEWAY_LIMIT_NAMESPACE="+w.dynKey,
		"GATEWAY_IP_LIMIT=100000/1s", "GATEWAY_USER_LIMIT=100000/1s", "GATEWAY_LOGIN_LIMIT=100000/1s",
		"LOG_LEVEL=warn", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SERVICE_NAME=gateway-test")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// exitWithin runs cmd, a gateway expected to stop by itself, and returns
// what it wrote and how it ended; past within it is killed and the test
// fails.
func exitWithin(t *testing.T, cmd *exec.Cmd, within time.Duration) (string, error) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the gateway still ran %v after its start:\n%s", within, out.String())
		return "", nil
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// do sends one request through the gateway and returns status, headers and
// the decoded upstream echo (when the upstream answered).
type result struct {
	Status int
	Header http.Header
	Body   []byte
	Echo   seenRequest
}

func (w *world) do(g *gatewayProc, method, path string, hdr map[string]string, body io.Reader) result {
	w.t.Helper()
	req, err := http.NewRequest(method, g.URL+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if resp.Header.Get("X-Upstream-Instance") != "" {
		_ = json.Unmarshal(b, &r.Echo)
	}
	return r
}

// eventually polls cond every 10ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
