// Command agent observes the platform's Go services from the kernel with eBPF: HTTP server RED, Go runtime pauses
// and goroutine creations, and TCP connection lifecycle, per process, with zero changes to the services. It serves
// Prometheus metrics on /metrics and liveness on /healthz (port 8085 by default), and the same metrics over OTLP when
// the standard OTEL_EXPORTER_OTLP_ENDPOINT (or _METRICS_ENDPOINT) is set. It must run as root (or with
// CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: bpf/README.md) on a kernel with BTF; otherwise it says what
// is missing and exits with status 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/contrib/bridges/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/bpf/internal/agent"
	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Config is the agent's environment.
type Config struct {
	Addr         string        `env:"HTTP_ADDR" envDefault:":8085" desc:"listen address for /metrics, /healthz and /readyz"`
	Targets      string        `env:"BPF_TARGETS" envDefault:"gateway,user,order,payment,bridge" desc:"comma list of executables to observe: absolute paths, or base names / comm"`
	ScanInterval time.Duration `env:"BPF_SCAN_INTERVAL" envDefault:"500ms" desc:"how often /proc is polled for targets starting and exiting"`
	Grace        time.Duration `env:"BPF_DETACH_GRACE" envDefault:"1m" desc:"how long probes stay on an executable no process runs"`
	HTTPProbe    string        `env:"BPF_HTTP_PROBE" envDefault:"uprobe" desc:"HTTP server RED from uprobes on net/http (uprobe: any transport, two traps per request) or from the socket layer (socket: plaintext HTTP/1.x on connections accepted after the agent started, no trap, but every process's socket calls pay its filter); uprobe stays the default because neither met 0.99x requests/s against a run with no agent (bpf/README.md)"`
	// The feature probe that picks the exitless path itself can be wrong: a vendor kernel that backports bpf_loop
	// or bpf_map_lookup_percpu_elem only in part passes it and then refuses the exit programs, and each refusal
	// takes its whole probe (HTTP server, runtime, calls) with it. This is the operator's way out.
	NoExitPrograms bool       `env:"BPF_NO_EXIT_PROGRAMS" envDefault:"false" desc:"load the HTTP server, runtime and call probes without their sched_process_exit programs, as the agent does itself on kernels before 5.19 (no bpf_loop or bpf_map_lookup_percpu_elem); for a kernel whose verifier refuses them although it reports both helpers. Exited processes' slots are then freed by the scan, so a pid reused before the next scan keeps counting into the old process's series (bpf/README.md, Minimum kernels)"`
	MaxExecutables int        `env:"BPF_MAX_EXECUTABLES" envDefault:"16" desc:"most executables probed at once; each costs its probes' BPF maps in the agent's memory (bpf/README.md, Map memory), and a target named by name matches any file of that name any user runs, so one over the cap is left unprobed, logged and counted (shanhai_bpf_executables_refused_total)"`
	LogLevel       slog.Level `env:"LOG_LEVEL" envDefault:"info" desc:"lowest level logged"`
}

// Validate rejects an empty listen address, an empty target list, a detach grace the agent would replace with its
// default and a scan interval that would spin.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, config.NotEmpty("HTTP_ADDR", c.Addr)) // http.Server{Addr: ""} listens on :80
	ts := targets(c.Targets)
	if len(ts) == 0 {
		errs = append(errs, config.Invalid("BPF_TARGETS", "name at least one executable"))
	}
	for _, t := range ts {
		if strings.Contains(t, "/") && !filepath.IsAbs(t) {
			errs = append(errs, config.Invalid("BPF_TARGETS", fmt.Sprintf("%q: an absolute path or a bare name (a relative path matches no process)", t)))
		}
	}
	if c.HTTPProbe != agent.HTTPProbeUprobe && c.HTTPProbe != agent.HTTPProbeSocket {
		errs = append(errs, config.Invalid("BPF_HTTP_PROBE", "uprobe or socket"))
	}
	if c.MaxExecutables < 1 {
		errs = append(errs, config.Invalid("BPF_MAX_EXECUTABLES", "at least 1"))
	}
	// agent.New takes a zero Grace for its default, so 0 (or less) ran with probes held a minute, not detached at once.
	if c.Grace <= 0 {
		errs = append(errs, config.Invalid("BPF_DETACH_GRACE", "more than 0"))
	}
	if c.ScanInterval < 10*time.Millisecond {
		errs = append(errs, config.Invalid("BPF_SCAN_INTERVAL", "at least 10ms"))
	}
	return errors.Join(errs...)
}

// targets splits the list, cleaning absolute paths: the agent compares them with /proc/<pid>/exe, which is always
// clean, so "$PWD/../var/bin/order" would match nothing. Symlinks are left to the agent, which resolves them on every
// scan: resolved here, once, a link created or repointed after the start named the old file for good.
func targets(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
			continue
		case filepath.IsAbs(t):
			t = filepath.Clean(t)
		}
		out = append(out, t)
	}
	return out
}

func main() {
	var cfg Config
	config.MustLoad(&cfg)
	// The OTEL_* variables are the SDK's, not Config's, and are checked as every other binary checks them: a bad one is
	// a configuration error (exit 2), not a failure found after the agent has attached.
	if err := telemetry.CheckEnv(nil); err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("agent stopped", "err", err)
		os.Exit(1)
	}
}

// agentConfig is the agent's configuration from the environment's.
func agentConfig(cfg Config, log *slog.Logger) agent.Config {
	return agent.Config{Targets: targets(cfg.Targets), ScanInterval: cfg.ScanInterval, Grace: cfg.Grace, HTTPProbe: cfg.HTTPProbe,
		NoExitPrograms: cfg.NoExitPrograms, MaxExecutables: cfg.MaxExecutables, Logger: log}
}

// serviceName is the agent's OTel service.name unless OTEL_SERVICE_NAME names another.
const serviceName = "shanhai-bpf-agent"

// run serves the agent until ctx ends. Its metrics are exported over OTLP as well when the standard OTEL_* variables
// name an endpoint: pkg/telemetry builds the exporter from them, and the contrib Prometheus bridge reads the same
// registry /metrics serves at each export, so both show the same series without a second set of instruments.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, err := agent.New(agentConfig(cfg, log))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: serviceName, Logger: log,
		MetricProducers: []sdkmetric.Producer{otelprom.NewMetricProducer(otelprom.WithGatherer(reg))}})
	if err != nil {
		a.Close()
		return fmt.Errorf("telemetry: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	// Ready once the first scan has attached to the targets present at start.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "first scan not done", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("agent started", "addr", cfg.Addr, "targets", cfg.Targets)

	// Stopping, Run ends its scan before the next attach; the last OTLP export then reads the maps, and only then does
	// Close detach the probes, which drops every series with them. Exported after the detach, it held none; exported
	// before Run returned, it waited for the scan's lock until every attach of a long first scan was done.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(runCtx) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	stopRun()
	return shutdown(tel, a, srv, serveErr, <-runErr)
}

// stopTimeout bounds the final OTLP export, and then the HTTP server's shutdown, each with a timeout of its own: the
// detach between them takes about 2 s per executable (README, "Running the agent"), and a server shutdown left with
// what remained of the export's time dropped the scrape that had waited for the detach, and a stop exited with status
// 1 ("context deadline exceeded", found by review; TestStopServesTheScrapeThatWaitedForTheDetach).
var stopTimeout = 5 * time.Second

// shutdown ends what run started once Run has returned: the one final export reads the maps, Close detaches the probes,
// and the server stops last, finishing the scrapes in flight (answered without series after the detach).
func shutdown(tel interface{ Shutdown(context.Context) error }, a interface{ Close() error }, srv *http.Server, serveErr, runErr error) error {
	ectx, cancelExport := context.WithTimeout(context.Background(), stopTimeout)
	defer cancelExport()
	telErr := tel.Shutdown(ectx)
	a.Close()
	if serveErr != nil {
		return errors.Join(serveErr, runErr, telErr)
	}
	sctx, cancelServe := context.WithTimeout(context.Background(), stopTimeout) // started after the detach
	defer cancelServe()
	return errors.Join(runErr, telErr, srv.Shutdown(sctx))
}
