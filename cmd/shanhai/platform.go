package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Names of the binaries, in start order; they stop in reverse (the gateway,
// the only door, closes first; the user service, holder of the keys, last).
var Names = []string{"user", "order", "payment", "bridge", "gateway"}

// Options say where the binaries are and what they talk to.
type Options struct {
	BinDir  string // holds user, order, payment, gateway, bridge
	DataDir string // SQLite files, JetStream and etcd data, logs
	// Ports gives each binary its HTTP port; a missing name gets a free port.
	Ports map[string]int
	// Admin gives each binary its pprof port; a missing name gets a free one.
	Admin map[string]int
	// Servers, when set, replaces the embedded infrastructure with these
	// connection variables (the -native run: scripts/deps.sh env).
	Servers map[string]string
	// DatabaseURL returns a service's DATABASE_URL; nil means a SQLite file
	// per service in DataDir.
	DatabaseURL func(service string) string
	LogLevel    string
	Log         io.Writer // child output; nil means a file per binary in DataDir/logs
}

// Platform is a running Shanhai: infrastructure plus the five binaries.
type Platform struct {
	Infra    *Infra // nil in a -native run
	Binaries map[string]*Binary
	Env      map[string]string // connection variables the binaries got
	Pulsar   bool              // whether the bridge runs leg B (archive to Pulsar)
	Ready    time.Duration     // from Start's call to every /readyz answering 200
	LogDir   string
	logs     []io.Closer
}

// Start brings the platform up and returns when every binary is ready.
func Start(ctx context.Context, o Options) (*Platform, error) {
	began := time.Now()
	p := &Platform{Binaries: map[string]*Binary{}, Env: map[string]string{}, LogDir: filepath.Join(o.DataDir, "logs")}
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
		for k, v := range in.Env() {
			p.Env[k] = v
		}
	}
	// Pulsar has no embeddable server: leg B (the archive) runs only when a
	// Pulsar URL is configured. The bridge's default URL would point at a
	// server that is not there, so the embedded run says which legs it wants.
	if url := os.Getenv("PULSAR_URL"); url != "" && p.Env["PULSAR_URL"] == "" {
		p.Env["PULSAR_URL"] = url
	}
	p.Pulsar = p.Env["PULSAR_URL"] != ""
	if err := p.startBinaries(ctx, o); err != nil {
		p.Stop()
		return nil, err
	}
	p.Ready = time.Since(began)
	return p, nil
}

func (p *Platform) startBinaries(ctx context.Context, o Options) error {
	ports := map[string]int{}
	httpPort := func(name string) (int, error) { return pick(o.Ports, name) }
	adminPort := func(name string) (int, error) { return pick(o.Admin, name) }
	for _, name := range Names {
		hp, err := httpPort(name)
		if err != nil {
			return err
		}
		ap, err := adminPort(name)
		if err != nil {
			return err
		}
		ports[name] = hp
		p.Binaries[name] = &Binary{Name: name, Path: filepath.Join(o.BinDir, name), Port: hp, Env: map[string]string{
			"HTTP_ADDR":  "127.0.0.1:" + strconv.Itoa(hp),
			"ADMIN_ADDR": "127.0.0.1:" + strconv.Itoa(ap),
		}}
	}
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	jwks := fmt.Sprintf("http://127.0.0.1:%d/.well-known/jwks.json", ports["user"])
	for _, name := range Names {
		b := p.Binaries[name]
		for k, v := range p.Env {
			b.Env[k] = v
		}
		b.Env["LOG_LEVEL"] = level
		b.Env["JWKS_URL"] = jwks
		b.Env["OTEL_SERVICE_NAME"] = name
		switch name {
		case "user", "order", "payment":
			if o.DatabaseURL != nil {
				b.Env["DATABASE_URL"] = o.DatabaseURL(name)
			} else {
				b.Env["DATABASE_URL"] = "sqlite://" + filepath.Join(o.DataDir, name+".db")
			}
		}
		switch name {
		case "user":
			// A throwaway signing key per run: tokens do not outlive the
			// process, which is what a local demo wants (pkg/auth KeyConfig).
			b.Env["AUTH_DEV_KEYS"] = "true"
		case "bridge":
			if !p.Pulsar {
				b.Env["BRIDGE_LEGS"] = "kafka-nats"
			}
		}
	}
	for _, name := range Names {
		b := p.Binaries[name]
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
	// All five start at once and find each other through discovery and JWKS
	// retries; waiting for each in turn would add their start-ups up.
	var wg sync.WaitGroup
	errs := make([]error, len(Names))
	for i, name := range Names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Binaries[name].WaitReady(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return p.waitRouted(ctx)
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

// pick returns the port named in m or a free one.
func pick(m map[string]int, name string) (int, error) {
	if m[name] != 0 {
		return m[name], nil
	}
	return freePort()
}

// Gateway is the gateway's base URL.
func (p *Platform) Gateway() string { return p.Binaries["gateway"].URL() }

// Pids are the child process ids, for RSS accounting.
func (p *Platform) Pids() map[string]int {
	m := map[string]int{}
	for name, b := range p.Binaries {
		m[name] = b.Pid()
	}
	return m
}

// Stop ends the binaries in reverse start order, then the infrastructure.
func (p *Platform) Stop() error {
	var errs []error
	for i := len(Names) - 1; i >= 0; i-- {
		if b := p.Binaries[Names[i]]; b != nil {
			errs = append(errs, b.Stop(15*time.Second))
		}
	}
	if p.Infra != nil {
		p.Infra.Close()
	}
	for _, c := range p.logs {
		_ = c.Close()
	}
	return errors.Join(errs...)
}
