// Package stack builds the platform's five binaries and runs each as its own
// process against real servers, the way an operator would: environment
// variables in, HTTP out. The end-to-end tests and the load run share it.
//
// Every name that could collide with another environment on the same servers
// is made unique per run: the JetStream stream and subject prefix, the bridge's
// Kafka consumer group, the etcd keys of the dynamic settings, the Redis limit
// namespace and the release version the services register under (the gateway's
// canary weights then send all traffic to this run's instances even though
// other runs register in the same etcd). What cannot be separated is the
// Kafka topics: the services write fixed topic names, so this run's bridge
// also sees other runs' events (it starts at the newest offset to see as few
// as possible) and the archive topics in Pulsar are shared.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// Binaries maps each binary's name to its main package, relative to the
// repository root.
var Binaries = map[string]string{
	"user":    "./services/user/cmd/user",
	"order":   "./services/order/cmd/order",
	"payment": "./services/payment/cmd/payment",
	"gateway": "./gateway/cmd/gateway",
	"bridge":  "./bridge/cmd/bridge",
}

// Root finds the repository root: the directory of the go.work that the go
// command uses from here.
func Root() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	w := strings.TrimSpace(string(out))
	if w == "" || w == "off" {
		return "", errors.New("no go.work in use: run from inside the repository")
	}
	return filepath.Dir(w), nil
}

// Build compiles every binary into dir with one go build, so shared packages
// compile once.
func Build(ctx context.Context, root, dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, pkg := range Binaries {
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// Servers are the connection variables of the real servers (scripts/deps.sh env).
type Servers struct {
	Redis  string
	Etcd   []string
	NATS   string
	Kafka  []string
	Pulsar string
	// PulsarAdmin is Pulsar's admin REST URL: the bridge reads each archive topic's max message size there, so a
	// message above it is dead-lettered instead of lost.
	PulsarAdmin string
}

// Options describe one run.
type Options struct {
	Bin, LogDir string
	Servers     Servers
	// DatabaseURLs holds a fresh PostgreSQL database per service: user, order, payment.
	DatabaseURLs map[string]string
	// TracesURL is an OTLP/HTTP traces endpoint (http://host:port/v1/traces); empty sends no traces.
	TracesURL string
	// Env adds or overrides variables per binary name (limits for a load run, for example).
	Env map[string]map[string]string
}

// Stack is a running platform.
type Stack struct {
	ID string
	// GatewayURL is where clients go, e.g. http://127.0.0.1:40123.
	GatewayURL string
	// Stream and Prefix are this run's JetStream stream and subject prefix:
	// payment results appear on Prefix+"shanhai.payments.>".
	Stream, Prefix string
	// PaymentKey is the etcd key of the payment provider's dynamic settings.
	PaymentKey string
	Addrs      map[string]string
	procs      []*Proc
	etcd       *clientv3.Client
	gatewayKey string
	lock       *os.File
}

// LockPath is the file whose exclusive lock a running stack holds. The
// services write fixed Kafka topic names, so two platforms on the same Kafka
// would each charge the other's orders: stacks started by this package wait
// for each other. Platforms started some other way are not covered.
var LockPath = filepath.Join(os.TempDir(), "shanhai-e2e-platform.lock")

// lockPlatform takes LockPath's exclusive lock, waiting for another stack to
// release it. It polls with LOCK_NB rather than blocking in flock, which no
// context can interrupt: Ctrl-C in cmd/stack must end the wait.
func lockPlatform(ctx context.Context) (*os.File, error) {
	lock, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("platform lock: %w", err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for said := false; ; said = true {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return lock, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			lock.Close()
			return nil, fmt.Errorf("platform lock %s: %w", LockPath, err)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "waiting for another stack (lock %s)\n", LockPath)
		}
		select {
		case <-ctx.Done():
			lock.Close()
			return nil, fmt.Errorf("waiting for another stack (lock %s): %w", LockPath, ctx.Err())
		case <-tick.C:
		}
	}
}

// Start launches user, order, payment and bridge, waits until each answers
// /readyz, then the gateway. It first waits for any other stack of this
// package to stop (LockPath). On error everything started is stopped.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	lock, err := lockPlatform(ctx)
	if err != nil {
		return nil, err
	}
	id := newID()
	s := &Stack{
		ID:         id,
		Stream:     "E2E_" + strings.ToUpper(id),
		Prefix:     "e2e" + id + ".",
		PaymentKey: "/shanhai/config/payment-e2e-" + id,
		gatewayKey: "gateway-e2e-" + id,
		Addrs:      map[string]string{},
		lock:       lock,
	}
	// Stop also releases the lock, so it is deferred before anything can fail.
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	s.etcd, err = clientv3.New(clientv3.Config{Endpoints: o.Servers.Etcd, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	version := "e2e-" + id
	// Canary weights naming only this run's version keep the gateway on this
	// run's instances; written before the gateway starts so its first request
	// already obeys them.
	canary := map[string]map[string]int{}
	for _, svc := range []string{"user", "order", "payment"} {
		canary[svc] = map[string]int{version: 100}
	}
	doc, _ := json.Marshal(map[string]any{"canary": canary})
	if err := s.put(ctx, "/shanhai/config/"+s.gatewayKey, string(doc)); err != nil {
		return nil, err
	}

	free, err := freeport.Addrs(2 * len(Binaries))
	if err != nil {
		return nil, err
	}
	ports, admins := map[string]string{}, map[string]string{}
	for name := range Binaries {
		ports[name], admins[name], free = free[0], free[1], free[2:]
	}
	jwks := "http://" + ports["user"] + "/.well-known/jwks.json"
	common := func(name string) map[string]string {
		e := map[string]string{
			"HTTP_ADDR":         ports[name],
			"ADMIN_ADDR":        admins[name], // pkg/config reads an empty value as unset, so a free port rather than ""
			"LOG_LEVEL":         "info",
			"SERVICE_VERSION":   version,
			"SHUTDOWN_TIMEOUT":  "5s",
			"REDIS_URL":         o.Servers.Redis,
			"ETCD_ENDPOINTS":    strings.Join(o.Servers.Etcd, ","),
			"NATS_URL":          o.Servers.NATS,
			"KAFKA_BROKERS":     strings.Join(o.Servers.Kafka, ","),
			"PULSAR_URL":        o.Servers.Pulsar,
			"PULSAR_ADMIN_URL":  o.Servers.PulsarAdmin,
			"JWKS_URL":          jwks,
			"OTEL_SERVICE_NAME": name,
			// Spans leave every 100 ms instead of the SDK's 5 s so a test
			// sees a whole trace soon after the saga ends.
			"OTEL_BSP_SCHEDULE_DELAY": "100",
			"OTEL_METRICS_EXPORTER":   "none",
		}
		if o.TracesURL != "" {
			e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = o.TracesURL
			e["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
		} else {
			e["OTEL_TRACES_EXPORTER"] = "none"
		}
		if u, ok := o.DatabaseURLs[name]; ok {
			e["DATABASE_URL"] = u
		}
		return e
	}
	env := map[string]map[string]string{}
	for name := range Binaries {
		env[name] = common(name)
	}
	env["user"]["AUTH_DEV_KEYS"] = "true"
	for _, svc := range []string{"order", "payment"} {
		env[svc]["NATS_STREAM"] = s.Stream
		env[svc]["NATS_SUBJECT_PREFIX"] = s.Prefix
	}
	env["payment"]["PAYMENT_SETTINGS_KEY"] = s.PaymentKey
	topics := []string{}
	for _, t := range []string{"shanhai.users", "shanhai.orders", "shanhai.payments"} {
		topics = append(topics, t+"="+s.Prefix+t)
	}
	b := env["bridge"]
	b["BRIDGE_TOPICS"] = strings.Join(topics, ",")
	b["BRIDGE_GROUP"] = "e2e-" + id
	b["BRIDGE_STREAM"] = s.Stream
	b["BRIDGE_STREAM_SUBJECTS"] = s.Prefix + ">"
	// A new group starting at the oldest offset would replay every event
	// other runs ever wrote, and this run's payment service would charge
	// their orders.
	b["BRIDGE_START_OFFSET"] = "last"
	g := env["gateway"]
	g["GATEWAY_DYNAMIC_KEY"] = s.gatewayKey
	g["GATEWAY_LIMIT_NAMESPACE"] = "gateway-e2e-" + id
	for name, extra := range o.Env {
		for k, v := range extra {
			env[name][k] = v
		}
	}

	for _, name := range []string{"user", "order", "payment", "bridge", "gateway"} {
		p, err := startProc(o.Bin, o.LogDir, name, env[name])
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, p)
		s.Addrs[name] = ports[name]
		if name == "bridge" {
			// The gateway comes last: by then every upstream is registered.
			for _, p := range s.procs {
				if err := p.waitReady(ctx, "http://"+s.Addrs[p.Name]+"/readyz", 90*time.Second); err != nil {
					return nil, err
				}
			}
		}
	}
	gw := s.procs[len(s.procs)-1]
	if err := gw.waitReady(ctx, "http://"+ports["gateway"]+"/readyz", 60*time.Second); err != nil {
		return nil, err
	}
	s.GatewayURL = "http://" + ports["gateway"]
	return s, nil
}

// SetPayment replaces the payment provider's dynamic settings (etcd JSON).
func (s *Stack) SetPayment(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.put(ctx, s.PaymentKey, string(b))
}

func (s *Stack) put(ctx context.Context, key, val string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.etcd.Put(ctx, key, val); err != nil {
		return fmt.Errorf("etcd put %s: %w", key, err)
	}
	return nil
}

// Stop ends every process (SIGTERM, then SIGKILL after 15 s) and removes
// this run's etcd keys. The caller removes the stream and databases.
func (s *Stack) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].stop(15 * time.Second)
	}
	if s.etcd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = s.etcd.Delete(ctx, s.PaymentKey)
		_, _ = s.etcd.Delete(ctx, "/shanhai/config/"+s.gatewayKey)
		cancel()
		_ = s.etcd.Close()
	}
	_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	_ = s.lock.Close()
}

// Exited reports processes that ended while the stack should be running.
func (s *Stack) Exited() []string {
	var out []string
	for _, p := range s.procs {
		select {
		case <-p.done:
			out = append(out, fmt.Sprintf("%s exited: %v", p.Name, p.err))
		default:
		}
	}
	return out
}

// Tails returns the last n lines of every process's log.
func (s *Stack) Tails(n int) string {
	var b strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&b, "==== %s (%s), last %d lines\n%s\n", p.Name, p.Log, n, tail(p.Log, n))
	}
	return b.String()
}

// Proc is one running binary; its stdout and stderr go to Log.
type Proc struct {
	Name, Log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

func startProc(bin, logDir, name string, env map[string]string) (*Proc, error) {
	// The directory is made here: one named by E2E_LOG_DIR or -logs that did
	// not exist yet was refused only after the build, a minute into the run.
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, name))
	// Only what is listed: a developer's own OTEL_* or DATABASE_URL must not
	// leak into the run.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) waitReady(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before ready: %v", p.Name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s (last /readyz: %s)", p.Name, within, last)
}

func (p *Proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func newID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
