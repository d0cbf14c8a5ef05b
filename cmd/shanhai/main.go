// Command shanhai runs the whole platform on one machine without Docker: the
// user, order and payment services, the bridge and the gateway, hosted in
// this one process through the same <module>.Run their production binaries
// call, against servers embedded here too (Kafka via kfake, NATS with
// JetStream, etcd, miniredis) and a SQLite file per service. With -native
// the parts use the real servers that scripts/deps.sh started; with
// -processes each part runs as its production binary, a child process.
//
//	make run                    # builds into var/bin and runs this
//	var/bin/shanhai -native     # against scripts/deps.sh servers
//	var/bin/shanhai -measure    # print start-up time and memory, then stop
//	var/bin/shanhai -processes  # five child processes of the binaries in -bin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/interrupt"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

func main() {
	// Under `make run | tee run.log` the Ctrl-C that stops the run ends tee
	// too: "stopping..." must not kill the run before its parts drain and
	// the temporary data directory goes.
	interrupt.OutliveBrokenPipe()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shanhai:", err)
		if status, ok := interrupt.Status(err); ok {
			os.Exit(status)
		}
		os.Exit(1)
	}
}

// interruption is the error of a start-up that ctx's stop signal ended;
// what had started was stopped again. It wraps the signal's interrupt.Error,
// so main exits with 128 + the signal's number (130 for Ctrl-C, 129 for
// SIGHUP, 143 for SIGTERM) and a script or supervisor can tell which stopped
// it: every one used to exit 130, so a closed terminal read as a Ctrl-C.
func interruption(ctx context.Context) error {
	return fmt.Errorf("%w during start-up; everything it started was stopped", context.Cause(ctx))
}

// portBlock gives each part its HTTP port (the gateway on port, the
// services on the next four) and its pprof port (1000 above), or says why
// port cannot hold the block.
func portBlock(port int) (httpPorts, admin map[string]int, err error) {
	const last = 65535 - 1004
	if port < 1 || port > last {
		return nil, nil, fmt.Errorf("-port %d: the run needs it and the next four for HTTP, and the same five 1000 "+
			"higher for pprof; choose 1-%d", port, last)
	}
	httpPorts, admin = map[string]int{}, map[string]int{}
	for i, name := range []string{"gateway", "user", "order", "payment", "bridge"} {
		httpPorts[name], admin[name] = port+i, port+1000+i
	}
	return httpPorts, admin, nil
}

// logLevelDefault is this environment's LOG_LEVEL, or info: the run hands
// every part its -log-level, so a LOG_LEVEL set for make run would otherwise
// be replaced by the flag's default, unlike every other variable.
func logLevelDefault() string {
	if l := os.Getenv("LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// partsLogLevel is the LOG_LEVEL every part gets for level, or why there is
// none. The parts' configurations read LOG_LEVEL through pkg/config, whose
// one check takes exactly debug, info, warn or error, so the flag is checked
// by that same check: slog's parser (which also takes "INFO" or "warn+1")
// let a level through that then stopped user, order and payment after the
// servers had started, and a list of the four names kept here could drift
// from the parts'. Capitals name the same level and are lowered rather than
// refused.
func partsLogLevel(level string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(level))
	var cfg struct {
		Level slog.Level `env:"LOG_LEVEL"`
	}
	if err := config.LoadFrom(&cfg, map[string]string{"LOG_LEVEL": l}); err != nil {
		var invalid *config.Error
		if errors.As(err, &invalid) && len(invalid.Vars) == 1 {
			err = invalid.Vars[0] // "LOG_LEVEL: ...: must be debug, info, warn or error"
		}
		return "", fmt.Errorf("-log-level %q (its default is LOG_LEVEL, when set): %w", level, err)
	}
	return l, nil
}

// sqliteDataDir refuses a -data the services' SQLite URLs cannot name.
// Each gets DATABASE_URL=sqlite://<data>/<service>.db, and pkg/database
// takes the file name up to a ? (what follows is the driver's options), so
// with one in <data> all three services opened one file beside the
// directory, and order and payment stopped on a migration "changed after
// it was applied": user's of the same name was there first.
//
// what names where dir came from: the -data flag, or $TMPDIR, in which the
// default -data is made.
func sqliteDataDir(what, dir string) error {
	if strings.Contains(dir, "?") {
		return fmt.Errorf("%s %q: a ? in it would end the SQLite file name in each service's DATABASE_URL "+
			"(sqlite://<data>/<service>.db), and all three would share one database outside it; choose a directory without a ?", what, dir)
	}
	return nil
}

func run() error {
	self, _ := os.Executable()
	var (
		binDir  = flag.String("bin", filepath.Dir(self), "directory holding the user, order, payment, bridge and gateway binaries (for -processes)")
		procs   = flag.Bool("processes", false, "run each part as its production binary from -bin, a child process, instead of in this process")
		dataDir = flag.String("data", "", "data and log directory (default: a new temporary directory, removed at exit unless a part failed)")
		native  = flag.Bool("native", false, "use the servers from scripts/deps.sh (its env command) instead of embedded ones")
		root    = flag.String("root", ".", "repository root, where scripts/deps.sh is (for -native)")
		port    = flag.Int("port", 8080, "gateway port; the services take the next four (user, order, payment, bridge)")
		level   = flag.String("log-level", logLevelDefault(), "LOG_LEVEL of the parts (their logs go to <data>/logs); default: $LOG_LEVEL, or info")
		measure = flag.Bool("measure", false, "start, print ready time and resident memory, stop")
	)
	flag.Parse()
	// Flags after a word are not parsed: "shanhai native -port 1" would
	// silently run the defaults.
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every option is a flag (-native, -port 28080, ...; -h lists them)", flag.Arg(0))
	}
	httpPorts, adminPorts, err := portBlock(*port)
	if err != nil {
		return err
	}
	if lo, hi, ok := ephemeralRange(); ok {
		if err := outsideEphemeral(*port, lo, hi); err != nil {
			return err
		}
	}
	if *level, err = partsLogLevel(*level); err != nil {
		return err
	}
	if !*native {
		what, dir := "-data", *dataDir
		if dir == "" {
			what, dir = "$TMPDIR (where the default -data is made)", os.TempDir()
		}
		if err := sqliteDataDir(what, dir); err != nil {
			return err
		}
	}

	// The ports are this run's before anything is made: two runs started at
	// once both found them free, split them and both stopped (lockPorts).
	locks, err := lockPorts(portLockDir, append(slices.Collect(maps.Values(httpPorts)), slices.Collect(maps.Values(adminPorts))...))
	if err != nil {
		return err
	}
	defer locks.release()
	// Every part's variables are checked before anything starts: one
	// message for all of them, no servers started only to be stopped.
	where := *dataDir
	if where == "" {
		where = filepath.Join(os.TempDir(), "shanhai-run") // stands in for the directory made below
	}
	if err := checkConfigs(Options{DataDir: where, LogLevel: *level, Ports: httpPorts, Admin: adminPorts}, *native); err != nil {
		return err
	}

	// Signals are caught from here on, before anything is made that a
	// Ctrl-C should undo (the temporary data directory); they used to be
	// caught only after -native had read its servers, so a Ctrl-C there
	// killed the run and left the directory behind. SIGHUP (the terminal
	// make run runs in was closed) stops it the same way, unless the run
	// started with it ignored, under nohup (interrupt.StopSignals).
	ctx, stop := interrupt.NotifyContext(context.Background(), interrupt.StopSignals()...)
	defer stop()
	// Default signal handling again once the first signal arrived, also
	// during start-up: a second Ctrl-C ends a shutdown that hangs.
	context.AfterFunc(ctx, stop)

	keep := *dataDir != ""
	if !keep {
		d, err := os.MkdirTemp("", "shanhai-run-")
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		*dataDir = d
		// A failed start keeps the directory: the error points at its logs.
		defer func() {
			if !keep {
				os.RemoveAll(d)
			}
		}()
	}
	// This program's own log (and whatever a library logs through slog's
	// default) goes beside the parts' logs, not over the banner.
	logs := filepath.Join(*dataDir, "logs")
	hostLog, err := logFile(logs, "shanhai")
	if err != nil {
		return err
	}
	defer hostLog.Close()
	slog.SetDefault(telemetry.NewLogger(hostLog, slog.LevelInfo))
	opts := Options{
		DataDir:  *dataDir,
		LogLevel: *level,
		Ports:    httpPorts,
		Admin:    adminPorts,
	}
	if *procs {
		opts.BinDir = *binDir
	}
	if *native {
		servers, err := NativeServers(ctx, *root)
		if err != nil {
			if ctx.Err() != nil {
				return interruption(ctx)
			}
			return err
		}
		opts.Servers = servers
	}
	if *native {
		dbs, err := ServiceDatabases(ctx, opts.Servers["DATABASE_URL"], "user", "order", "payment")
		if err != nil {
			if ctx.Err() != nil {
				return interruption(ctx) // as anywhere in the start-up, not the driver's "context canceled"
			}
			return err
		}
		opts.DatabaseURL = func(s string) string { return dbs[s] }
	}

	p, err := Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return interruption(ctx)
		}
		if errors.Is(err, errPortTaken) || errors.Is(err, errNoBinary) || errors.Is(err, errDataDirInUse) || errors.Is(err, errNoPulsar) {
			return err // nothing started, nothing logged
		}
		if errors.As(err, new(refusal)) {
			return fmt.Errorf("start: %w", err) // the message is whole: nothing to keep
		}
		keep = true
		return fmt.Errorf("start: %w (logs in %s)", err, logs)
	}
	mem, memErr := p.Measure()
	if *measure {
		// The figures are all -measure delivers: ones that could not be
		// written (stdout's reader gone; SIGPIPE is notified, so the write
		// fails instead of killing the run) fail it, after the same stop.
		_, werr := fmt.Printf("ready in %d ms\n", p.Ready.Milliseconds())
		if werr == nil && memErr == nil {
			_, werr = fmt.Printf("resident memory: %s\n", mem)
		}
		err := p.Stop()
		if werr != nil {
			err = errors.Join(fmt.Errorf("-measure: writing its figures: %w", werr), err)
		}
		return err
	}
	Banner(os.Stdout, p, *native, mem, memErr)

	var exited error
	select {
	case <-ctx.Done():
	case exited = <-anyExit(p):
	}
	// A part that exited did not cancel ctx: default signal handling here
	// too, so a second Ctrl-C ends a shutdown that hangs.
	stop()
	fmt.Println("\nstopping...")
	err = p.Stop()
	if exited != nil {
		keep = true // the message points at the part's log
		return errors.Join(exited, err)
	}
	if err == nil {
		fmt.Println("stopped")
	}
	return err
}

// anyExit reports the first part that ends on its own: the platform is
// broken then, and stopping the rest beats serving half of it.
func anyExit(p *Platform) <-chan error {
	c := make(chan error, len(p.Parts))
	for name, b := range p.Parts {
		go func() {
			err := <-b.Exited()
			b.done <- err
			why := "exited on its own" // a clean exit, e.g. a child killed with SIGTERM
			if err != nil {
				why = "stopped: " + err.Error()
			}
			c <- fmt.Errorf("%s %s (log: %s)", name, why, filepath.Join(p.LogDir, name+".log"))
		}()
	}
	return c
}
