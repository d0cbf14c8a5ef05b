package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A loaded machine's embedded etcd that does not answer a lease revoke within
// server.DeregisterTimeout made Platform.Stop report a failed stop (exit 1),
// though that etcd closes right after and nothing is lost. Here the revoke
// goes through a proxy silenced before the stop, so it is never answered:
// against the run's own etcd that is a WARN, against any other still a
// failure, and another part's failure is still reported beside it.
func TestLateDeregistrationAgainstOwnEtcd(t *testing.T) {
	f := startLateLeave(t)
	ctx, in, logs := f.ctx, f.in, &f.logs

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
	f.stopped = true
	err := own.Stop()
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

// lateLeaveRun is what both late-deregistration tests start with: the
// embedded infrastructure, and slog's default log captured for the WARN.
type lateLeaveRun struct {
	ctx     context.Context
	in      *Infra
	logs    testenv.LogBuffer
	stopped bool // by a Platform.Stop, which closes in; a second Close panics
}

func startLateLeave(t *testing.T) *lateLeaveRun {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded infrastructure")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	in, err := StartInfra(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &lateLeaveRun{ctx: ctx, in: in}
	t.Cleanup(func() {
		if !f.stopped {
			in.Close()
		}
	})
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&f.logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return f
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

// The same stop under -processes, where a part's stop is only its exit
// status. It used to count no exit status at all, so a child's real failure
// was not reported either; now a child that failed its stop fails the run's,
// unless its log says the deregistration against the run's own etcd was all
// that timed out, as for a hosted part.
func TestLateDeregistrationOfAChildAgainstOwnEtcd(t *testing.T) {
	if os.Getenv(childPartEnv) != "" {
		runChildPart()
		return
	}
	f := startLateLeave(t)
	ctx, in, logs := f.ctx, f.in, &f.logs
	logDir := t.TempDir()

	notOwn := &Platform{LogDir: logDir, Parts: map[string]*Part{"user": childPart(ctx, t, in, logDir, "user", "late")}}
	if err := notOwn.Stop(); err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("late deregistration of a child against an etcd not the run's: Stop = %v, want its exit status", err)
	}

	own := &Platform{Infra: in, LogDir: logDir, Parts: map[string]*Part{
		"user":    childPart(ctx, t, in, logDir, "user", "late"),
		"order":   childPart(ctx, t, in, logDir, "order", "fail"),
		"payment": childPart(ctx, t, in, logDir, "payment", "plain"),
	}}
	f.stopped = true
	err := own.Stop()
	if err == nil || !strings.Contains(err.Error(), "stop order: exit status 1") {
		t.Fatalf("Stop = %v, want order's failed stop", err)
	}
	if strings.Contains(err.Error(), "stop user") {
		t.Errorf("Stop = %v: user's late deregistration against the run's own etcd counted as a failed stop", err)
	}
	// Beside its late deregistration, payment's main gave a reason of its
	// own in plain text: a failed stop, reported with that reason.
	if !strings.Contains(err.Error(), "stop payment: exit status 1") || !strings.Contains(err.Error(), "3 outbox rows left unsent") {
		t.Errorf("Stop = %v, want payment's failed stop with its plain-text reason", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "part=user") {
		t.Errorf("no WARN for user's late deregistration; log:\n%s", logs.String())
	}
}

// childPartEnv runs this test binary as a child part (runChildPart): "late"
// registers in etcd at $SHANHAI_TEST_ETCD, "plain" does too and then prints
// a plain-text reason, "fail" fails a shutdown hook.
const childPartEnv = "SHANHAI_TEST_CHILD_PART"

// childPart starts this test binary as the named child part, its log in
// logDir, and once it is ready silences its etcd proxy: a "late" child's
// deregistration at its stop is never answered.
func childPart(ctx context.Context, t *testing.T, in *Infra, logDir, name, mode string) *Part {
	t.Helper()
	proxy := testenv.SilencingProxy(t, in.Env()["ETCD_ENDPOINTS"])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// The part runs its Path without arguments: a script adds the test's.
	script := filepath.Join(t.TempDir(), name)
	body := fmt.Sprintf("#!/bin/sh\nexec %q -test.run='^TestLateDeregistrationOfAChildAgainstOwnEtcd$'\n", os.Args[0])
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	part := &Part{Name: name, Port: port, Path: script, Env: map[string]string{
		childPartEnv: mode, "SHANHAI_TEST_NAME": name, "SHANHAI_TEST_ETCD": proxy.Addr(),
		"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}}
	log, err := logFile(logDir, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	if err := part.Start(log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if part.Running() {
			_ = part.cmd.Process.Kill()
		}
	})
	if err := part.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.Silence()
	return part
}

// runChildPart is a child part's process: a pkg/server server that stops on
// SIGTERM and ends as a service binary does (pkg/server.RunService, then
// ExitCode): a failed stop is logged by RunService and exits 1. A "plain"
// child is a "late" one whose main then writes a plain-text reason of its
// own before it exits 1, as a main's fmt.Fprintln would.
func runChildPart() {
	name, mode := os.Getenv("SHANHAI_TEST_NAME"), os.Getenv(childPartEnv)
	ln, err := net.Listen("tcp", os.Getenv("HTTP_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	err = server.Part{}.RunService(context.Background(), server.Wiring{Name: name, LogLevel: slog.LevelInfo,
		New: func(_ context.Context, log *slog.Logger, tp *telemetry.Provider) (server.Runner, error) {
			opts := server.Options{Name: name, Logger: log, Telemetry: tp, ShutdownTimeout: 5 * time.Second}
			var steps []func(context.Context) error
			if mode == "late" || mode == "plain" {
				cli, err := clientv3.New(discovery.EtcdConfig([]string{os.Getenv("SHANHAI_TEST_ETCD")}, 5*time.Second, slog.New(slog.DiscardHandler)))
				if err != nil {
					return nil, err
				}
				reg := discovery.NewEtcdRegistry(cli, 10*time.Second)
				opts.Deregister = reg.Deregister
				steps = append(steps, func(ctx context.Context) error {
					return reg.Register(ctx, discovery.Instance{ID: name + "-1", Service: name, Addr: ln.Addr().String()})
				})
			}
			srv := server.New(opts)
			if mode == "fail" {
				srv.OnShutdown(func(context.Context) error { return errors.New("outbox not flushed") })
			}
			return runnerFunc(func(ctx context.Context) error { return srv.ServeStarting(ctx, ln, steps...) }), nil
		}})
	if err != nil && mode == "plain" {
		fmt.Fprintln(os.Stderr, name+": 3 outbox rows left unsent")
	}
	os.Exit(server.ExitCode(os.Stderr, name, err))
}

// runnerFunc is a server.Runner made of its Run.
type runnerFunc func(context.Context) error

func (f runnerFunc) Run(ctx context.Context) error { return f(ctx) }

// childLateLeave reads pkg/server's attributes, not its messages: reworded
// lines still tell a late deregistration, and a line without the attributes,
// or one that is not JSON, does not pass for one.
func TestChildLateLeaveReadsAttributesNotWording(t *testing.T) {
	exit := exec.Command("sh", "-c", "exit 1").Run()
	step := `{"level":"ERROR","msg":"reworded step","step":"deregister","timed_out":true,"error":"any text"}`
	last := `{"level":"ERROR","msg":"reworded end","err":"any text","failed_steps":[{"step":"deregister","timed_out":true}],"other_errors":0}`
	for _, tc := range []struct {
		name, log string
		late      bool
		plain     string
	}{
		{"late, reworded", step + "\n" + last + "\n", true, ""},
		{"step not timed out", strings.Replace(step, `"timed_out":true`, `"timed_out":false`, 1) + "\n" + last + "\n", false, ""},
		{"another error in Run's", step + "\n" + strings.Replace(last, `"other_errors":0`, `"other_errors":1`, 1) + "\n", false, ""},
		{"an error line of its own", step + "\n" + `{"level":"ERROR","msg":"outbox not flushed"}` + "\n" + last + "\n", false, ""},
		{"plain text beside", step + "\n" + last + "\nuser: 3 outbox rows left unsent\n", false, "user: 3 outbox rows left unsent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "user.log")
			if err := os.WriteFile(log, []byte(`{"level":"INFO","msg":"before this stop"}`+"\n"+tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
			before := int64(len(`{"level":"INFO","msg":"before this stop"}` + "\n"))
			late, plain := childLateLeave(exit, log, before)
			if late != tc.late || plain != tc.plain {
				t.Errorf("childLateLeave = %v, %q; want %v, %q", late, plain, tc.late, tc.plain)
			}
		})
	}
}
