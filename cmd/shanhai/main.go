// Command shanhai runs the whole platform on one machine without Docker: the
// user, order and payment services, the bridge and the gateway, each as its
// own child process of the production binary, against servers embedded in
// this process (Kafka via kfake, NATS with JetStream, etcd, miniredis) and a
// SQLite file per service. With -native the same binaries use the real
// servers that scripts/deps.sh started.
//
//	make run                 # builds the binaries into var/bin and runs this
//	var/bin/shanhai -native  # against scripts/deps.sh servers
//	var/bin/shanhai -measure # print start-up time and memory, then stop
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shanhai:", err)
		os.Exit(1)
	}
}

func run() error {
	self, _ := os.Executable()
	var (
		binDir  = flag.String("bin", filepath.Dir(self), "directory holding the user, order, payment, bridge and gateway binaries")
		dataDir = flag.String("data", "", "data and log directory (default: a new temporary directory, removed at exit)")
		native  = flag.Bool("native", false, "use the servers from scripts/deps.sh (its env command) instead of embedded ones")
		root    = flag.String("root", ".", "repository root, where scripts/deps.sh is (for -native)")
		port    = flag.Int("port", 8080, "gateway port; the services take the next four (user, order, payment, bridge)")
		level   = flag.String("log-level", "info", "LOG_LEVEL of the binaries (their logs go to <data>/logs)")
		measure = flag.Bool("measure", false, "start, print ready time and resident memory, stop")
	)
	flag.Parse()

	keep := *dataDir != ""
	if !keep {
		d, err := os.MkdirTemp("", "shanhai-run-")
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		*dataDir = d
		defer os.RemoveAll(d)
	}
	opts := Options{
		BinDir:   *binDir,
		DataDir:  *dataDir,
		LogLevel: *level,
		Ports: map[string]int{
			"gateway": *port, "user": *port + 1, "order": *port + 2, "payment": *port + 3, "bridge": *port + 4,
		},
		Admin: map[string]int{
			"gateway": *port + 1000, "user": *port + 1001, "order": *port + 1002, "payment": *port + 1003, "bridge": *port + 1004,
		},
	}
	if *native {
		servers, err := NativeServers(*root)
		if err != nil {
			return err
		}
		opts.Servers = servers
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *native {
		dbs, err := ServiceDatabases(ctx, opts.Servers["DATABASE_URL"], "user", "order", "payment")
		if err != nil {
			return err
		}
		opts.DatabaseURL = func(s string) string { return dbs[s] }
	}

	p, err := Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start: %w (logs in %s)", err, filepath.Join(*dataDir, "logs"))
	}
	mem, memErr := p.Measure()
	if *measure {
		fmt.Printf("ready in %d ms\n", p.Ready.Milliseconds())
		if memErr == nil {
			fmt.Printf("resident memory: %s\n", mem)
		}
		return p.Stop()
	}
	Banner(os.Stdout, p, *native, mem, memErr)

	var exited error
	select {
	case <-ctx.Done():
	case exited = <-anyExit(p):
	}
	fmt.Println("\nstopping...")
	err = p.Stop()
	if exited != nil {
		return errors.Join(exited, err)
	}
	if err == nil {
		fmt.Println("stopped")
	}
	return err
}

// anyExit reports the first child that ends on its own: the platform is
// broken then, and stopping the rest beats serving half of it.
func anyExit(p *Platform) <-chan error {
	c := make(chan error, len(p.Binaries))
	for name, b := range p.Binaries {
		go func() {
			err := <-b.Exited()
			b.done <- err
			c <- fmt.Errorf("%s exited: %v (log: %s)", name, err, filepath.Join(p.LogDir, name+".log"))
		}()
	}
	return c
}
