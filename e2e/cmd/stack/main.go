// Command stack runs the platform the way the end-to-end test does (five
// processes on the real servers of scripts/deps.sh, names unique to the run)
// until Ctrl-C, for load runs and manual poking. The client limits of the
// gateway and the user service are opened up with -load, because a load
// generator is one client IP sending thousands of requests a second.
//
//	eval "$(scripts/deps.sh env)"
//	go run ./e2e/cmd/stack -load
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/e2e/internal/stack"
)

func main() {
	load := flag.Bool("load", false, "turn off the per-IP, per-user and log in limits (gateway and user service)")
	logs := flag.String("logs", "", "directory for the process logs (default: a new temporary directory)")
	extra := map[string]map[string]string{}
	flag.Func("env", "binary:NAME=value, repeatable (e.g. payment:PROVIDER_LATENCY_MEDIAN=0s)", func(s string) error {
		bin, kv, ok1 := strings.Cut(s, ":")
		k, v, ok2 := strings.Cut(kv, "=")
		if _, known := stack.Binaries[bin]; !ok1 || !ok2 || !known {
			return fmt.Errorf("want binary:NAME=value with binary one of user, order, payment, gateway, bridge")
		}
		if extra[bin] == nil {
			extra[bin] = map[string]string{}
		}
		extra[bin][k] = v
		return nil
	})
	flag.Parse()
	// Flags after a word are not parsed: "stack load" would run with the
	// client limits on, and a load run would find that out a minute later.
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "stack: unexpected argument %q: every option is a flag (-load, -logs DIR, -env binary:NAME=value)\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *load, *logs, extra); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, load bool, logs string, extra map[string]map[string]string) error {
	servers := stack.Servers{
		Redis:       env("REDIS_URL", "redis://127.0.0.1:16379/0"),
		Etcd:        strings.Split(env("ETCD_ENDPOINTS", "127.0.0.1:12379"), ","),
		NATS:        env("NATS_URL", "nats://127.0.0.1:14222"),
		Kafka:       strings.Split(env("KAFKA_BROKERS", "127.0.0.1:19092"), ","),
		Pulsar:      env("PULSAR_URL", "pulsar://127.0.0.1:16650"),
		PulsarAdmin: env("PULSAR_ADMIN_URL", "http://127.0.0.1:18080"),
	}
	root, err := stack.Root()
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "shanhai-stack-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	if logs == "" {
		if logs, err = os.MkdirTemp("", "shanhai-stack-logs-"); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, "building the binaries ...")
	if err := stack.Build(ctx, root, bin); err != nil {
		return err
	}
	dbs, drop, err := databases(ctx, env("DATABASE_URL", "postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable"))
	if err != nil {
		return err
	}
	defer drop()

	o := stack.Options{Bin: bin, LogDir: logs, Servers: servers, DatabaseURLs: dbs}
	if load {
		o.Env = map[string]map[string]string{
			"gateway": {"GATEWAY_IP_LIMIT": "0", "GATEWAY_LOGIN_LIMIT": "0", "GATEWAY_USER_LIMIT": "0", "LOG_LEVEL": "warn"},
			"user":    {"LOGIN_IP_ATTEMPTS": "1000000", "LOGIN_ACCOUNT_ATTEMPTS": "1000000", "SIGNUP_IP_ATTEMPTS": "1000000", "LOG_LEVEL": "warn"},
			"order":   {"LOG_LEVEL": "warn"},
			"payment": {"LOG_LEVEL": "warn"},
			"bridge":  {"LOG_LEVEL": "warn"},
		}
	}
	for bin, kv := range extra {
		if o.Env == nil {
			o.Env = map[string]map[string]string{}
		}
		if o.Env[bin] == nil {
			o.Env[bin] = map[string]string{}
		}
		for k, v := range kv {
			o.Env[bin][k] = v
		}
	}
	st, err := stack.Start(ctx, o)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, logs)
	}
	defer func() {
		st.Stop()
		dropStream(servers.NATS, st.Stream)
	}()
	fmt.Printf("gateway  %s\npayments subjects %sshanhai.payments.> (NATS %s)\nlogs     %s\nCtrl-C stops it.\n",
		st.GatewayURL, st.Prefix, servers.NATS, logs)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if ex := st.Exited(); len(ex) > 0 {
				return fmt.Errorf("%v\n%s", ex, st.Tails(30))
			}
		}
	}
}

// databases creates one fresh database per service and returns a function
// that drops them.
func databases(ctx context.Context, base string) (map[string]string, func(), error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	out := map[string]string{}
	var names []string
	drop := func() {
		for _, n := range names {
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, _ = admin.ExecContext(c, "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
			cancel()
		}
		_ = admin.Close()
	}
	for _, svc := range []string{"user", "order", "payment"} {
		name := "stack_" + hex.EncodeToString(b) + "_" + svc
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			drop()
			return nil, nil, fmt.Errorf("create database %s: %w", name, err)
		}
		names = append(names, name)
		v := *u
		v.Path = "/" + name
		out[svc] = v.String()
	}
	return out, drop, nil
}

func dropStream(natsURL, stream string) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return
	}
	defer nc.Close()
	if js, err := jetstream.New(nc); err == nil {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = js.DeleteStream(c, stream)
		cancel()
	}
}
