package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A loaded machine's embedded etcd that does not answer a lease revoke within
// server.DeregisterTimeout made Platform.Stop report a failed stop (exit 1),
// though that etcd closes right after and nothing is lost. Here the revoke
// goes through a proxy silenced before the stop, so it is never answered:
// against the run's own etcd that is a WARN, against any other still a
// failure, and another part's failure is still reported beside it.
func TestLateDeregistrationAgainstOwnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded infrastructure")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := StartInfra(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	closed := false // by the Platform.Stop below; a second Close panics
	t.Cleanup(func() {
		if !closed {
			in.Close()
		}
	})
	var logs testenv.LogBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	// Not the run's etcd (Infra nil, as in a -native run): still a failure.
	notOwn := &Platform{Parts: map[string]*Part{"user": silencedPart(ctx, t, in, "user")}}
	if err := notOwn.Stop(); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deregister") {
		t.Fatalf("late deregistration against an etcd not the run's: Stop = %v, want its timeout", err)
	}

	failing := &Part{Name: "order", host: func(ctx context.Context, _ map[string]string, _ io.Writer) error {
		<-ctx.Done()
		return errors.New("outbox not flushed")
	}}
	if err := failing.Start(io.Discard); err != nil {
		t.Fatal(err)
	}
	own := &Platform{Infra: in, Parts: map[string]*Part{"user": silencedPart(ctx, t, in, "user"), "order": failing}}
	closed = true
	err = own.Stop()
	if err == nil || !strings.Contains(err.Error(), "outbox not flushed") {
		t.Fatalf("Stop = %v, want order's failure", err)
	}
	if strings.Contains(err.Error(), "deregister") {
		t.Errorf("Stop = %v: user's late deregistration against the run's own etcd counted as a failed stop", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "part=user") {
		t.Errorf("no WARN for user's late deregistration; log:\n%s", logs.String())
	}
}

// silencedPart runs a hosted part, a pkg/server server registered in in's
// etcd through a proxy, and silences the proxy once the part is ready: its
// stop's lease revoke is never answered.
func silencedPart(ctx context.Context, t *testing.T, in *Infra, name string) *Part {
	t.Helper()
	proxy := testenv.SilencingProxy(t, in.Env()["ETCD_ENDPOINTS"])
	cli, err := clientv3.New(discovery.EtcdConfig([]string{proxy.Addr()}, 5*time.Second, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	reg := discovery.NewEtcdRegistry(cli, 10*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	part := &Part{Name: name, Port: ln.Addr().(*net.TCPAddr).Port,
		host: func(ctx context.Context, _ map[string]string, log io.Writer) error {
			srv := server.New(server.Options{Name: name, Logger: slog.New(slog.NewJSONHandler(log, nil)),
				Deregister: reg.Deregister, ShutdownTimeout: 5 * time.Second})
			return srv.ServeStarting(server.Hosted(ctx), ln, func(ctx context.Context) error {
				return reg.Register(ctx, discovery.Instance{ID: name + "-1", Service: name, Addr: addr})
			})
		}}
	if err := part.Start(io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := part.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.Silence()
	return part
}
