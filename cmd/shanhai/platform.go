package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Names of the parts, in start order. The gateway, the only door, stops
// first; the others then stop together (Platform.Stop).
var Names = []string{"user", "order", "payment", "bridge", "gateway"}

// Options say how the parts run and what they talk to.
type Options struct {
	// BinDir, when set, holds the production binaries user, order, payment,
	// gateway and bridge, and each part runs as a child process of its
	// binary (-processes). Empty means all five run in this process.
	BinDir  string
	DataDir string // SQLite files, JetStream and etcd data, logs
	// Ports gives each part its HTTP port; a missing name gets a free port.
	Ports map[string]int
	// Admin gives each part its pprof port; a missing name gets a free one.
	Admin map[string]int
	// Servers, when set, replaces the embedded infrastructure with these
	// connection variables (the -native run: scripts/deps.sh env).
	Servers map[string]string
	// DatabaseURL returns a service's DATABASE_URL; nil means a SQLite file
	// per service in DataDir.
	DatabaseURL func(service string) string
	LogLevel    string
	Log         io.Writer // the parts' logs; nil means a file per part in DataDir/logs
	// Logger receives this program's own diagnostics (OpenTelemetry's
	// errors); nil means slog's default.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for every part to be ready; zero means
	// defaultReadyTimeout. A part whose server never answers would
	// otherwise keep the run waiting, silent, until Ctrl-C.
	ReadyTimeout time.Duration
}

// defaultReadyTimeout is far above a normal start-up (seconds), so only a
// part that cannot become ready reaches it.
const defaultReadyTimeout = 2 * time.Minute

// Platform is a running Shanhai: infrastructure plus the five parts.
type Platform struct {
	Infra     *Infra // nil in a -native run
	Parts     map[string]*Part
	Env       map[string]string   // connection variables the parts got
	Pulsar    bool                // whether the bridge runs leg B (archive to Pulsar)
	Ready     time.Duration       // from Start's call to every /readyz answering 200
	Telemetry *telemetry.Provider // shared by the hosted parts; nil with -processes
	LogDir    string
	// LeftPending is how many orders an earlier run on this data
	// directory left mid-saga, which this run cannot finish (leftPending).
	LeftPending int64
	logs        []io.Closer

	// gatewayGone closes once the gateway has stopped, ending the hosted
	// services' wait after deregistering (server.CallersStopped); nil when
	// they must wait it out (see startParts).
	gatewayGone chan struct{}
	goneOnce    sync.Once
}

// pulsarEnv is the Pulsar this process's environment names for a run whose
// servers do not: PULSAR_URL and, if given, its admin API (with which the
// bridge dead-letters what a topic's max message size would refuse).
func pulsarEnv(servers map[string]string) map[string]string {
	pulsar := map[string]string{}
	if servers["PULSAR_URL"] == "" {
		if url := os.Getenv("PULSAR_URL"); url != "" {
			pulsar["PULSAR_URL"] = url
			if admin := os.Getenv("PULSAR_ADMIN_URL"); admin != "" && servers["PULSAR_ADMIN_URL"] == "" {
				pulsar["PULSAR_ADMIN_URL"] = admin
			}
		}
	}
	return pulsar
}

// Start brings the platform up and returns when every part is ready.
func Start(ctx context.Context, o Options) (*Platform, error) {
	began := time.Now()
	if err := checkBinaries(o.BinDir); err != nil {
		return nil, err
	}
	if err := checkPorts(o.Ports, o.Admin); err != nil {
		return nil, err
	}
	// Pulsar has no embeddable server: leg B (the archive) runs only when a
	// Pulsar URL is configured, here or in this process's environment (an
	// earlier eval "$(./scripts/deps.sh env)" exports one). A URL nothing
	// answers at would keep the bridge from ever getting ready, so it is
	// checked before anything starts, as -native checks its servers.
	pulsar := pulsarEnv(o.Servers)
	if err := checkServers(pulsar); err != nil {
		return nil, fmt.Errorf("%w: PULSAR_URL is set, so the bridge would archive to Pulsar, but %w; "+
			"or unset PULSAR_URL and PULSAR_ADMIN_URL to run without the archive", errNoPulsar, err)
	}
	p := &Platform{Parts: map[string]*Part{}, Env: map[string]string{}, LogDir: filepath.Join(o.DataDir, "logs")}
	if o.Servers != nil {
		for k, v := range o.Servers {
			p.Env[k] = v
		}
	} else {
		in, err := StartInfra(ctx, o.DataDir)
		if err != nil {
			return nil, err
		}
		p.Infra = in
		// Counted once the directory is this run's (StartInfra locked it)
		// and before the parts start: a failure only costs the warning.
		if o.DatabaseURL == nil {
			n, err := leftPending(o.DataDir)
			if err != nil {
				slog.Warn("earlier run's PENDING orders not counted", "dir", o.DataDir, "err", err)
			} else if n > 0 {
				p.LeftPending = n
				slog.Warn("an earlier run on this data directory left orders PENDING whose events this run does not have",
					"dir", o.DataDir, "orders", n)
			}
		}
		for k, v := range in.Env() {
			p.Env[k] = v
		}
	}
	for k, v := range pulsar {
		p.Env[k] = v
	}
	// Without a Pulsar URL the bridge's default would point at a server
	// that is not there, so the run says which legs it wants (startParts).
	p.Pulsar = p.Env["PULSAR_URL"] != ""
	if err := p.startParts(ctx, o); err != nil {
		p.Stop()
		return nil, err
	}
	p.Ready = time.Since(began)
	return p, nil
}

func (p *Platform) startParts(ctx context.Context, o Options) error {
	var logLevel slog.Level
	if err := logLevel.UnmarshalText([]byte(o.level())); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	if o.BinDir == "" {
		// One Setup for all five: the OTel globals and the Prometheus
		// registry are per process (see host).
		log := o.Logger
		if log == nil {
			log = slog.Default()
		}
		tp, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "shanhai", Logger: log})
		if err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
		p.Telemetry = tp
		// Only with the embedded etcd is the gateway known to be the one
		// caller that routes to the services by discovery: nothing outside
		// this process is pointed at that etcd (a gateway someone starts
		// against the address the banner prints would be, and would meet a
		// closed listener during the stop). With -native the services
		// register in a shared etcd whose other gateways (a production
		// binary, the e2e stack) may still route to them, so they wait, as
		// production binaries do; -processes runs those binaries.
		if p.Infra != nil {
			p.gatewayGone = make(chan struct{})
		}
	}
	free, err := freeport.Ports(2 * len(Names))
	if err != nil {
		return err
	}
	pick := func(m map[string]int, name string) int {
		if m[name] != 0 {
			return m[name]
		}
		p := free[0]
		free = free[1:]
		return p
	}
	ports := map[string]int{}
	for _, name := range Names {
		hp, ap := pick(o.Ports, name), pick(o.Admin, name)
		ports[name] = hp
		part := &Part{Name: name, Port: hp, Env: map[string]string{
			"HTTP_ADDR":  "127.0.0.1:" + strconv.Itoa(hp),
			"ADMIN_ADDR": "127.0.0.1:" + strconv.Itoa(ap),
		}}
		if o.BinDir != "" {
			part.Path = filepath.Join(o.BinDir, name)
		} else if part.host, err = host(name, p.Telemetry, logLevel, p.gatewayGone); err != nil {
			return err
		}
		p.Parts[name] = part
	}
	for _, name := range Names {
		maps.Copy(p.Parts[name].Env, o.partEnv(name, p.Env, ports["user"]))
	}
	for _, name := range Names {
		b := p.Parts[name]
		var w io.Writer = o.Log
		if w == nil {
			f, err := logFile(p.LogDir, name)
			if err != nil {
				return err
			}
			p.logs = append(p.logs, f)
			w = f
		}
		if err := b.Start(w); err != nil {
			return err
		}
	}
	limit := o.ReadyTimeout
	if limit == 0 {
		limit = defaultReadyTimeout
	}
	readyCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// All five start at once and find each other through discovery and JWKS
	// retries; waiting for each in turn would add their start-ups up.
	// A part that is not ready is named with its log, which says what it
	// waits for; an interrupt (ctx) needs no pointer.
	named := func(name string, err error) error {
		if err == nil || ctx.Err() != nil || o.Log != nil {
			return err
		}
		log := filepath.Join(p.LogDir, name+".log")
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: not ready within the start-up limit of %s (log: %s)", err, limit, log)
		}
		if refusedConfig(p.Parts[name], err) {
			return err // names each variable and what it takes: the log adds nothing
		}
		if errors.Is(err, errEndedEarly) && !p.Parts[name].Hosted() {
			// A hosted part's error is its Run's, which says why; a
			// child's is its exit status, and why is in its log.
			if tail := logTail(log); tail != "" {
				return fmt.Errorf("%w; the end of its log:%s\n(log: %s)", err, tail, log)
			}
		}
		return fmt.Errorf("%w (log: %s)", err, log)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(Names))
	for i, name := range Names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = named(name, p.Parts[name].WaitReady(readyCtx))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		refused := true
		for i, name := range Names {
			refused = refused && (errs[i] == nil || refusedConfig(p.Parts[name], errs[i]))
		}
		if refused {
			return refusal{err}
		}
		return err
	}
	return named("gateway", p.waitRouted(readyCtx))
}

// level is the parts' LOG_LEVEL: LogLevel, or info.
func (o Options) level() string {
	if o.LogLevel == "" {
		return "info"
	}
	return o.LogLevel
}

// partEnv is what the run sets for part name on top of this process's
// environment (README): the servers' connection variables, its log level,
// where the signing keys are (the user service at userPort), its trace
// name, a database per service, the user service's throwaway keys and,
// without a Pulsar, the bridge's one leg. HTTP_ADDR and ADMIN_ADDR are the
// part's own (startParts).
func (o Options) partEnv(name string, servers map[string]string, userPort int) map[string]string {
	env := maps.Clone(servers)
	env["LOG_LEVEL"] = o.level()
	env["JWKS_URL"] = fmt.Sprintf("http://127.0.0.1:%d/.well-known/jwks.json", userPort)
	env["OTEL_SERVICE_NAME"] = name
	switch name {
	case "user", "order", "payment":
		if o.DatabaseURL != nil {
			env["DATABASE_URL"] = o.DatabaseURL(name)
		} else {
			env["DATABASE_URL"] = "sqlite://" + filepath.Join(o.DataDir, name+".db")
		}
	}
	switch name {
	case "user":
		// A throwaway signing key per run: tokens do not outlive the
		// process, which is what a local demo wants (pkg/auth KeyConfig).
		env["AUTH_DEV_KEYS"] = "true"
	case "bridge":
		// Without a Pulsar URL the bridge's default would point at a
		// server that is not there.
		if servers["PULSAR_URL"] == "" {
			env["BRIDGE_LEGS"] = "kafka-nats"
		}
	}
	return env
}

// waitRouted waits until the gateway has discovered the services the demo
// calls first. A ready gateway has an empty instance list until its etcd
// watch delivers the registrations, which the services make as they start;
// without this wait the first request can get 503 "no live instance". Two
// public routes prove it: the signing keys (user) and the catalogue (order,
// which answers 401 to an anonymous call: anything but 503 means routed).
// Payment has no public route; nothing in the demo calls it through the
// gateway before an order was paid.
func (p *Platform) waitRouted(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections() // why: see WaitReady
	routed := func(path string, ok func(int) bool) bool {
		resp, err := client.Get(p.Gateway() + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return ok(resp.StatusCode)
	}
	for {
		if routed("/.well-known/jwks.json", func(s int) bool { return s == http.StatusOK }) &&
			routed("/api/v1/products", func(s int) bool { return s != http.StatusServiceUnavailable }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway did not discover user and order: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// errNoPulsar marks an embedded run refused, before anything started, for
// a PULSAR_URL it cannot use.
var errNoPulsar = errors.New("no Pulsar to archive to")

// errNoBinary marks a part's production binary missing from Options.BinDir.
var errNoBinary = errors.New("no binary to run")

// checkBinaries fails on the first part whose binary is not an executable
// file in dir (-processes), before anything starts. `go run ./cmd/shanhai
// -processes` is the usual way to get there: -bin then defaults to the
// directory of go run's temporary executable, which holds no binaries. The
// run used to start the embedded servers first and fail on the fork.
func checkBinaries(dir string) error {
	if dir == "" {
		return nil // the parts run in this process
	}
	for _, name := range Names {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return fmt.Errorf("%w: -processes runs each part's production binary from -bin, and %s: %v; "+
				"build them (make run builds them into var/bin) or point -bin at them", errNoBinary, path, err)
		}
	}
	return nil
}

// errPortTaken marks a chosen port something else listens on.
var errPortTaken = errors.New("port already in use")

// checkPorts fails on the first chosen port something already listens on,
// before anything starts: otherwise the part that cannot bind ends the run
// only after the servers and the other parts came up, and its one line
// drowns in their shutdown noise.
func checkPorts(httpPorts, admin map[string]int) error {
	for _, m := range []map[string]int{httpPorts, admin} {
		for _, name := range Names {
			if m[name] == 0 {
				continue
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m[name]))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				holder := "stop what holds it"
				if c, dialErr := net.DialTimeout("tcp", addr, time.Second); dialErr == nil {
					_ = c.Close()
				} else {
					holder = "nothing listens there: a connection holds it as its local port (an open one, or one " +
						"closed less than a minute ago: TIME_WAIT); wait until it is gone"
				}
				return fmt.Errorf("%w: port %d (%s): %v; %s, or move the whole block with -port%s",
					errPortTaken, m[name], name, err, holder, portExample(httpPorts["gateway"]))
			}
			_ = l.Close()
		}
	}
	return nil
}

// portExample suggests the block 100 above gw (gw+100 for the gateway, the
// next four for the services, 1000 higher for pprof), if it fits.
func portExample(gw int) string {
	if gw == 0 || gw+100 > 65535-1004 {
		return ""
	}
	return fmt.Sprintf(`, e.g. make run ARGS="-port %d"`, gw+100)
}

// Gateway is the gateway's base URL.
func (p *Platform) Gateway() string { return p.Parts["gateway"].URL() }

// Pids are the processes the parts run in, for RSS accounting: this one for
// a hosted part.
func (p *Platform) Pids() map[string]int {
	m := map[string]int{}
	for name, b := range p.Parts {
		m[name] = b.Pid()
	}
	return m
}

// stopGrace is how long Stop lets each part take before it gives up on it
// (and, for a child process, kills it): the part's stop budget at the
// default SHUTDOWN_TIMEOUT of 10 s, rounded up — the ceiling of a stop that
// is slow but not hung, as compose's stop_grace_period and Kubernetes' grace
// period give it (deploy/stopgrace_test.go, stopBudget, says what each is
// made of). A flat 15 s cut payment's stop short when its provider hung:
// its last-delivery try, that answer's store and a dead letter get 5 s each
// after its consumer's deadline, and a part given up on has the embedded
// brokers closed under it. A healthy stop ends in about a second.
var stopGrace = map[string]time.Duration{
	"gateway": 15 * time.Second,
	"user":    25 * time.Second,
	"order":   30 * time.Second,
	"payment": 45 * time.Second,
	"bridge":  25 * time.Second,
}

// Stop ends the gateway, then the other parts together, each draining, then
// flushes and stops the shared telemetry, then the infrastructure.
//
// Each service waits a second after leaving discovery before it closes its
// listener (pkg/server.DefaultDeregisterDelay), for a gateway whose etcd
// watch has not seen the deletion yet. The gateway is the only part that
// routes by discovery, and it has stopped, with its requests drained, before
// the services begin. So in the embedded run the services are told so
// (gatewayGone) and skip the wait: Ctrl-C took 1.16–1.25 s with it, 0.14–0.28 s without
// (README, "Measured"). Only a gateway that has really ended closes it: one
// still stopping after its grace may still route, and the services then
// wait as ever. Where they do wait (-native, -processes), stopping them
// together overlaps the three waits into one (one by one they added 3 s).
// Nothing else orders them: no part calls another while it stops, and the
// events between them wait in Kafka and JetStream, which stop after every
// part. A deregistration that the run's own etcd did not answer in time is
// not a failed stop (lateLeave).
func (p *Platform) Stop() error {
	var errs []error
	g := p.Parts["gateway"]
	if g != nil {
		errs = append(errs, p.stopPart("gateway", g))
	}
	if p.gatewayGone != nil && !g.Running() {
		p.goneOnce.Do(func() { close(p.gatewayGone) })
	}
	rest := make([]error, len(Names))
	var wg sync.WaitGroup
	for i, name := range Names {
		if b := p.Parts[name]; b != nil && name != "gateway" {
			wg.Go(func() { rest[i] = p.stopPart(name, b) })
		}
	}
	wg.Wait()
	errs = append(errs, rest...)
	if p.Telemetry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, p.Telemetry.Shutdown(ctx))
		cancel()
	}
	if p.Infra != nil {
		p.Infra.Close()
	}
	for _, c := range p.logs {
		_ = c.Close()
	}
	return errors.Join(errs...)
}

// refusedConfig tells whether err is a hosted part's refusal of its
// variables (pkg/config's *Error, from its Run): the message then says all
// there is. A child's refusal is only its exit status, and why is in its log.
func refusedConfig(part *Part, err error) bool {
	var invalid *config.Error
	return part.Hosted() && errors.Is(err, errEndedEarly) && errors.As(err, &invalid)
}

// refusal is the error of a start that failed only because parts refused
// their variables. The run keeps no temporary data directory for it: every
// try with a mistyped variable used to leave one behind, its logs pointed to
// by a message that already named the variable and what it takes.
type refusal struct{ error }

func (r refusal) Unwrap() error { return r.error }
