package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
)

var (
	descServer = prometheus.NewDesc("shanhai_bpf_http_server_request_duration_seconds",
		"Server-side HTTP request latency: ServeHTTP's entry to its return (uprobes, BPF_HTTP_PROBE=uprobe), or the read "+
			"of a request's first bytes to the write of its response's status line on the socket (BPF_HTTP_PROBE=socket). "+
			"Status 0: the handler panicked and net/http closed the connection without an answer (uprobe mode). "+
			"Status unknown: answered through a ResponseWriter whose status is not read (golang.org/x/net/http2's own server "+
			"in a stripped executable).",
		[]string{"pid", "exe", "method", "status", "status_class"}, nil)
	descHijacked = prometheus.NewDesc("shanhai_bpf_http_server_hijacked_duration_seconds",
		"HTTP server requests whose handler took the connection over (Hijack: WebSocket upgrades, CONNECT tunnels), "+
			"from ServeHTTP's entry to the handler's return, which is when the session ended; kept out of "+
			"shanhai_bpf_http_server_request_duration_seconds, where they were 200s lasting the whole session "+
			"(BPF_HTTP_PROBE=uprobe; the socket probe counts the 101 the hijacker writes).",
		[]string{"pid", "exe", "method"}, nil)
	descClient = prometheus.NewDesc("shanhai_bpf_http_client_request_duration_seconds",
		"HTTP client call latency seen by uprobes on net/http.(*Transport).roundTrip; status 0 when the call failed.",
		[]string{"pid", "exe", "method", "status", "status_class", "error"}, nil)
	descCall = prometheus.NewDesc("shanhai_bpf_client_call_duration_seconds",
		"Latency of database/sql queryDC/execDC, go-redis _process, kafka-go WriteMessages, NATS publish and Pulsar Send calls.",
		[]string{"pid", "exe", "system", "operation", "error"}, nil)
	descSTW = prometheus.NewDesc("shanhai_bpf_go_stw_pause_seconds",
		"Go stop-the-world pauses (runtime.stopTheWorldWithSema entry to runtime.startTheWorldWithSema return).",
		[]string{"pid", "exe"}, nil)
	descGoroutines = prometheus.NewDesc("shanhai_bpf_go_goroutines_created_total",
		"Goroutines created: the runtime's own count since the process started (/sched/goroutines-created, read from "+
			"its memory), or where that cannot be read, runtime.newproc1 calls seen by a uprobe since it was attached.",
		[]string{"pid", "exe"}, nil)
	descTCPOpened = prometheus.NewDesc("shanhai_bpf_tcp_connections_opened_total",
		"TCP connections opened by the process: active = connect() established, passive = accept() returned.",
		[]string{"pid", "exe", "direction"}, nil)
	descTCPClosed = prometheus.NewDesc("shanhai_bpf_tcp_connections_closed_total",
		"Opened TCP connections of the process that reached CLOSE.", []string{"pid", "exe"}, nil)
	descTCPFailed = prometheus.NewDesc("shanhai_bpf_tcp_connect_failed_total",
		"connect() attempts of the process that never reached ESTABLISHED.", []string{"pid", "exe"}, nil)
	descTCPRetrans = prometheus.NewDesc("shanhai_bpf_tcp_retransmits_total",
		"TCP segments retransmitted on the process's connections.", []string{"pid", "exe"}, nil)
	descTarget = prometheus.NewDesc("shanhai_bpf_target_info",
		"A process being observed and the probes attached to its executable.", []string{"pid", "exe", "probes"}, nil)
	descUnprobed = prometheus.NewDesc("shanhai_bpf_target_unprobed",
		"A probe that applies to a target process's executable but is not on it, and why: probe=\"all\" when the "+
			"executable failed to parse or attach, else the probe refused (e.g. a Go release or library version the "+
			"offsets tables do not hold).",
		[]string{"pid", "exe", "probe", "reason"}, nil)
	descSystemUnprobed = prometheus.NewDesc("shanhai_bpf_system_unprobed",
		"A part of the system-wide probes that is not running, and why, for as long as the agent runs: "+
			"probe=\"tcp_recount\" is the TCP socket iterator that counts the opens and retransmits no program saw "+
			"(a kernel before 5.15, or a load or attach the kernel refused); without it a connect whose ESTABLISHED "+
			"ran unseen is counted in shanhai_bpf_tcp_connect_failed_total at its close, not opened.",
		[]string{"probe", "reason"}, nil)
	descDropped = prometheus.NewDesc("shanhai_bpf_series_dropped_total",
		"HTTP server requests not counted because their series found no room in the probe's maps (4096 series per "+
			"executable in uprobe mode, 4096 in all in socket mode) or, in uprobe mode, no room to be kept in flight "+
			"(65536 per executable), for every target, since the agent started.",
		nil, nil)
	descCallDropped = prometheus.NewDesc("shanhai_bpf_call_series_dropped_total",
		"Client calls (probe: httpclient, db, messaging) not counted because their series found no room in the probe's "+
			"maps (4096 series per probe per executable) or no room to be kept in flight (65536 per probe per "+
			"executable), for every target, since the agent started.",
		[]string{"probe"}, nil)
	// The runtime and TCP probes' drops are metrics of their own rather than more values of probe in
	// shanhai_bpf_call_series_dropped_total: what they lose is not calls but pauses, goroutine creations and
	// connection events, and a sum over probe would add them up.
	descRuntimeDropped = prometheus.NewDesc("shanhai_bpf_runtime_series_dropped_total",
		"Go runtime events not counted because their process found no room in the runtime probe's maps (4096 "+
			"processes per executable): series=\"stw\" stop-the-world pauses, series=\"goroutines\" goroutine creations "+
			"(newproc1 uprobe only), for every target, since the agent started.",
		[]string{"series"}, nil)
	descTCPDropped = prometheus.NewDesc("shanhai_bpf_tcp_series_dropped_total",
		"TCP events not counted because their process found no room in the TCP probe's map (8192 processes of the "+
			"targets' executables), since the agent started: an open, a close or a failed connect counts 1, a "+
			"retransmit the segments it retransmitted (as shanhai_bpf_tcp_retransmits_total counts them).",
		nil, nil)
	descTCPUntracked = prometheus.NewDesc("shanhai_bpf_tcp_connections_untracked_total",
		"TCP connections of targets not counted at all (open, close, failed connect, retransmits) because the TCP "+
			"probe's socket map (65536 open connections of targets at once) was full or the kernel could not allocate its "+
			"entry, since the agent started.",
		nil, nil)
	descRefused = prometheus.NewDesc("shanhai_bpf_executables_refused_total",
		"Executables a target's process ran that were left unprobed because the agent probed as many as "+
			"BPF_MAX_EXECUTABLES (16 by default) allows already, since the agent started; one refused while its processes run counts once.",
		nil, nil)
	descErrors = prometheus.NewDesc("shanhai_bpf_read_errors_total",
		"Scrapes that could not read every BPF map, since the agent started.", nil, nil)
)

// Collector exposes the agent's maps to Prometheus, reading them at scrape time.
func (a *Agent) Collector() prometheus.Collector { return collector{a} }

type collector struct{ a *Agent }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descServer, descHijacked, descClient, descCall, descSTW, descGoroutines, descTCPOpened, descTCPClosed,
		descTCPFailed, descTCPRetrans, descTarget, descUnprobed, descSystemUnprobed, descDropped, descCallDropped, descRuntimeDropped, descTCPDropped, descTCPUntracked, descRefused, descErrors} {
		ch <- d
	}
}

func histMetric(d *prometheus.Desc, h hist.Hist, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstHistogram(d, h.Count, float64(h.SumNs)/1e9, h.Cumulative(), labels...)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	targets := c.a.Targets()
	exe := map[int]string{}
	for _, t := range targets {
		t.Exe = labelValue(t.Exe)
		exe[t.PID] = t.Exe
		probes := ""
		for i, p := range t.Probes {
			if i > 0 {
				probes += ","
			}
			probes += p
		}
		ch <- prometheus.MustNewConstMetric(descTarget, prometheus.GaugeValue, 1, strconv.Itoa(t.PID), t.Exe, probes)
		for probe, why := range t.Unprobed {
			ch <- prometheus.MustNewConstMetric(descUnprobed, prometheus.GaugeValue, 1, strconv.Itoa(t.PID), t.Exe, probe, labelValue(why))
		}
	}
	if why := c.a.recountOff; why != "" {
		ch <- prometheus.MustNewConstMetric(descSystemUnprobed, prometheus.GaugeValue, 1, unprobedRecount, labelValue(why))
	}
	s, err := c.a.Snapshot()
	failed := err != nil
	if err != nil {
		c.a.log.Error("read maps", "err", err)
	}
	dropped, droppedErr := c.a.SeriesDropped()
	if droppedErr != nil {
		c.a.log.Error("read dropped series counters", "err", droppedErr)
		failed = true
	}
	callDropped, err := c.a.CallSeriesDropped()
	if err != nil {
		c.a.log.Error("read dropped call series counters", "err", err)
		failed = true
	}
	runtimeDropped, err := c.a.RuntimeSeriesDropped()
	if err != nil {
		c.a.log.Error("read dropped runtime events counters", "err", err)
		failed = true
	}
	tcpDropped, tcpDroppedErr := c.a.TCPSeriesDropped()
	if tcpDroppedErr != nil {
		c.a.log.Error("read dropped TCP events counter", "err", tcpDroppedErr)
		failed = true
	}
	tcpUntracked, tcpUntrackedErr := c.a.TCPConnectionsUntracked()
	if tcpUntrackedErr != nil {
		c.a.log.Error("read untracked TCP connections counter", "err", tcpUntrackedErr)
		failed = true
	}
	errs := c.a.readErrors.Load()
	if failed {
		errs = c.a.readErrors.Add(1)
	}
	// A drop counter that could not be read whole is left out of this scrape rather than reported as the part that
	// was read: a lower value would read as a counter reset, and rate() would count the whole total again.
	if droppedErr == nil {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(dropped))
	}
	for probe, n := range callDropped {
		ch <- prometheus.MustNewConstMetric(descCallDropped, prometheus.CounterValue, float64(n), probe)
	}
	for series, n := range runtimeDropped {
		ch <- prometheus.MustNewConstMetric(descRuntimeDropped, prometheus.CounterValue, float64(n), series)
	}
	if tcpDroppedErr == nil {
		ch <- prometheus.MustNewConstMetric(descTCPDropped, prometheus.CounterValue, float64(tcpDropped))
	}
	if tcpUntrackedErr == nil {
		ch <- prometheus.MustNewConstMetric(descTCPUntracked, prometheus.CounterValue, float64(tcpUntracked))
	}
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(c.a.cappedTotal.Load()))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(errs))
	for k, h := range s.Server {
		e, ok := exe[k.PID]
		if !ok {
			continue
		}
		if k.Status == StatusHijacked {
			ch <- histMetric(descHijacked, h, strconv.Itoa(k.PID), e, k.Method)
			continue
		}
		status, class := statusLabels(k.Status)
		ch <- histMetric(descServer, h, strconv.Itoa(k.PID), e, k.Method, status, class)
	}
	for k, h := range s.Calls {
		e, ok := exe[k.PID]
		if !ok {
			continue
		}
		if k.System == "http" {
			ch <- histMetric(descClient, h, strconv.Itoa(k.PID), e, k.Method, strconv.Itoa(k.Status), strconv.Itoa(k.Status/100)+"xx", strconv.FormatBool(k.Error))
			continue
		}
		ch <- histMetric(descCall, h, strconv.Itoa(k.PID), e, k.System, k.Operation, strconv.FormatBool(k.Error))
	}
	for pid, h := range s.STW {
		if e, ok := exe[pid]; ok {
			ch <- histMetric(descSTW, h, strconv.Itoa(pid), e)
		}
	}
	for pid, n := range s.Goroutines {
		if e, ok := exe[pid]; ok {
			ch <- prometheus.MustNewConstMetric(descGoroutines, prometheus.CounterValue, float64(n), strconv.Itoa(pid), e)
		}
	}
	for pid, t := range s.TCP {
		e, ok := exe[pid]
		if !ok {
			continue
		}
		p := strconv.Itoa(pid)
		ch <- prometheus.MustNewConstMetric(descTCPOpened, prometheus.CounterValue, float64(t.Active), p, e, "active")
		ch <- prometheus.MustNewConstMetric(descTCPOpened, prometheus.CounterValue, float64(t.Passive), p, e, "passive")
		ch <- prometheus.MustNewConstMetric(descTCPClosed, prometheus.CounterValue, float64(t.Closed), p, e)
		ch <- prometheus.MustNewConstMetric(descTCPFailed, prometheus.CounterValue, float64(t.Failed), p, e)
		ch <- prometheus.MustNewConstMetric(descTCPRetrans, prometheus.CounterValue, float64(t.Retransmits), p, e)
	}
}

// SeriesDropped sums the HTTP server probes' counts of requests whose series the maps had no room for: each probe
// counts them per CPU (series_dropped in httpserver.c and httpsock.c) so that a full map is never silent. Probes
// detached since count on (Agent.detach), so the total never goes back. With an error the total is only what could
// be read, not to be reported.
func (a *Agent) SeriesDropped() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.droppedRetired
	for _, b := range a.bins {
		if b.http == nil {
			continue
		}
		d, err := sumPerCPU(b.http.SeriesDropped)
		if err != nil {
			return n, fmt.Errorf("http server probe of %s: %w", b.exe, err)
		}
		n += d
	}
	if a.sock != nil {
		d, err := sumPerCPU(a.sock.objs.SeriesDropped)
		if err != nil {
			return n, fmt.Errorf("http socket probe: %w", err)
		}
		n += d
	}
	return n, nil
}

// CallSeriesDropped is SeriesDropped for the call probes (call_series_dropped in include/calls.h), by probe name; every
// call probe has an entry, zero until one drops, so the counter exists before it first moves. A probe whose counter
// could not be read in some executable has no entry (the error says which): part of its total would be lower than
// what an earlier call returned.
func (a *Agent) CallSeriesDropped() (map[string]uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := map[string]uint64{}
	for probe := range callSites {
		n[probe] = a.callDroppedRetired[probe]
	}
	unread := map[string]bool{}
	var errs []error
	for _, b := range a.bins {
		for probe, m := range b.callDropped {
			d, err := sumPerCPU(m)
			if err != nil {
				unread[probe] = true
				errs = append(errs, fmt.Errorf("%s probe of %s: %w", probe, b.exe, err))
				continue
			}
			n[probe] += d
		}
	}
	for probe := range unread {
		delete(n, probe)
	}
	return n, errors.Join(errs...)
}

// runtimeDropSeries names the runtime probe's runtime_dropped counters by key (RT_DROPPED_* in goruntime.c): the
// series label of shanhai_bpf_runtime_series_dropped_total.
var runtimeDropSeries = [...]string{"stw", "goroutines"}

// RuntimeSeriesDropped is CallSeriesDropped for the runtime probes (runtime_dropped in goruntime.c), by series: pauses
// ("stw") and goroutine creations ("goroutines") whose process found no room in the probe's maps. Both series have an
// entry, zero until one drops; a series that could not be read in some executable has none (the error says which).
func (a *Agent) RuntimeSeriesDropped() (map[string]uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := map[string]uint64{}
	for i, series := range runtimeDropSeries {
		n[series] = a.runtimeDroppedRetired[i]
	}
	unread := map[string]bool{}
	var errs []error
	for _, b := range a.bins {
		if b.rt == nil {
			continue
		}
		for i, series := range runtimeDropSeries {
			d, err := sumPerCPUAt(b.rt.RuntimeDropped, uint32(i))
			if err != nil {
				unread[series] = true
				errs = append(errs, fmt.Errorf("runtime probe of %s, %s: %w", b.exe, series, err))
				continue
			}
			n[series] += d
		}
	}
	for series := range unread {
		delete(n, series)
	}
	return n, errors.Join(errs...)
}

// TCPSeriesDropped is the TCP probe's count of events whose process found no room in its map (tcp_dropped in
// tcp.c). The probe is loaded once for the agent's life, so the count never goes back.
func (a *Agent) TCPSeriesDropped() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sys == nil {
		return 0, fmt.Errorf("tcp probe: %w", errClosed)
	}
	n, err := sumPerCPU(a.sys.tcp.TcpDropped)
	if err != nil {
		return 0, fmt.Errorf("tcp probe: %w", err)
	}
	return n + a.sys.unseenDropped, nil
}

// TCPConnectionsUntracked is the TCP probe's count of targets' connections that found its socket map full
// (owners_full in tcp.c). The probe is loaded once for the agent's life, so the count never goes back.
func (a *Agent) TCPConnectionsUntracked() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sys == nil {
		return 0, fmt.Errorf("tcp probe: %w", errClosed)
	}
	n, err := sumPerCPU(a.sys.tcp.OwnersFull)
	if err != nil {
		return 0, fmt.Errorf("tcp probe: %w", err)
	}
	return n, nil
}

// sumPerCPU sums the CPUs' values of the single-entry per-CPU counter m.
func sumPerCPU(m *ebpf.Map) (uint64, error) { return sumPerCPUAt(m, 0) }

// sumPerCPUAt sums the CPUs' values of entry key of the per-CPU counter array m.
func sumPerCPUAt(m *ebpf.Map, key uint32) (uint64, error) {
	var vals []uint64
	if err := m.Lookup(key, &vals); err != nil {
		return 0, fmt.Errorf("read %s[%d]: %w", m, key, err)
	}
	var n uint64
	for _, v := range vals {
		n += v
	}
	return n, nil
}

// labelValue is s as a label value: Prometheus refuses one that is not valid UTF-8, and the refusal of one metric
// fails the whole scrape (promhttp answers 500). What the agent exports comes from outside it: an executable's path is
// whatever bytes its directories are named with (any user can start a process that matches a target by name), and a
// reason may quote it. Invalid bytes become U+FFFD.
func labelValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// statusLabels are the status and status_class labels of a server request's Status.
func statusLabels(status int) (string, string) {
	if status == StatusUnknown {
		return "unknown", "unknown"
	}
	return strconv.Itoa(status), strconv.Itoa(status/100) + "xx"
}
