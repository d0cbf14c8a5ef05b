package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardsQueryMetricsTheCodeExports: every metric a Grafana panel queries must be one some binary defines,
// so a renamed metric breaks this test instead of silently emptying a panel.
func TestDashboardsQueryMetricsTheCodeExports(t *testing.T) {
	defined := definedMetrics(t)
	files, _ := filepath.Glob("observability/grafana/dashboards/*.json")
	if len(files) < 5 {
		t.Fatalf("want the five provisioned dashboards, found %d", len(files))
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				// Every series the expression selects, bare ones too (a gauge read as "sum (x)"): a
				// pattern that only took names before "{" or "[" let a misspelt bare gauge through.
				for _, name := range seriesNames(tg.Expr) {
					if !defined(name) {
						t.Errorf("%s: panel %q queries %s, which no binary exports", filepath.Base(file), p.Title, name)
					}
				}
			}
		}
	}
}

// definedMetrics collects metric names from the source: OTel instrument names (dots become underscores in
// Prometheus) and client_golang names, and answers for a Prometheus series name with any standard suffix.
func definedMetrics(t *testing.T) func(string) bool {
	t.Helper()
	names := map[string]bool{}
	instrument := regexp.MustCompile(`(?:Counter|Histogram|Gauge|UpDownCounter|NewDesc|Name:)\(?\s*"([a-z][a-z0-9_.]*)"`)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "var" || d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range instrument.FindAllStringSubmatch(string(src), -1) {
			names[strings.ReplaceAll(m[1], ".", "_")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	suffixes := []string{"_bucket", "_count", "_sum", "_total", "_seconds", "_ratio"}
	return func(series string) bool {
		for _, s := range []string{"promql", "by", "rate", "sum", "max", "increase", "histogram_quantile"} {
			if series == s {
				return true // PromQL words before "(" never reach here; this guards odd spacing
			}
		}
		candidates := []string{series}
		for changed := true; changed; {
			changed = false
			for _, c := range candidates {
				for _, s := range suffixes {
					if base, ok := strings.CutSuffix(c, s); ok && !contains(candidates, base) {
						candidates = append(candidates, base)
						changed = true
					}
				}
			}
		}
		for _, c := range candidates {
			if names[c] {
				return true
			}
		}
		return false
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDashboardLegendsNameLabelsTheQueryKeeps: a panel's legend ({{label}}) names only labels its query's result
// has; after "sum by (a, b)" those are a and b. The breaker transitions legend read {{to}}, a label no series has, so
// every line was drawn as "<breaker> →" and the state it moved to was nowhere.
func TestDashboardLegendsNameLabelsTheQueryKeeps(t *testing.T) {
	files, _ := filepath.Glob("observability/grafana/dashboards/*.json")
	aggregation := regexp.MustCompile(`\b(?:sum|max|min|avg|count)\s+by\s*\(([^)]*)\)`)
	legendLabel := regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr, LegendFormat string }
			}
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				// The outermost aggregation comes first in these queries (histogram_quantile wraps its sum).
				m := aggregation.FindStringSubmatch(tg.Expr)
				if m == nil {
					continue // no "by": the series keep their own labels (or have none, which a legend then shows)
				}
				kept := map[string]bool{}
				for _, l := range strings.Split(m[1], ",") {
					kept[strings.TrimSpace(l)] = true
				}
				for _, l := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
					checked++
					if !kept[l[1]] {
						t.Errorf("%s: panel %q legend %q names %s, which %q does not keep", filepath.Base(file), p.Title, tg.LegendFormat, l[1], tg.Expr)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no legend label checked: the dashboards' shape changed, follow it here")
	}
}

// causeLabels are the labels that say why a series counted, which an operator acts on, by the metric that carries
// them and the file that sets them. A panel aggregating the metric must keep the label, or every cause is drawn as
// one line. The fallback panel summed shanhai_limit_fallback_decisions_total whole after d132edb gave it a reason:
// "unreachable" (look at the network or the server) and "refused" (a full noeviction Redis: pkg/limit) looked alike.
var causeLabels = map[string]struct{ label, source string }{
	"shanhai_limit_fallback_decisions_total": {"reason", "pkg/limit/redis.go"},
	"bridge_dlq_total":                       {"reason", "bridge/internal/metrics/metrics.go"},
	"bridge_offset_resets_total":             {"side", "bridge/internal/metrics/metrics.go"},
	"shanhai_bpf_target_unprobed":            {"reason", "bpf/internal/agent/metrics.go"},
}

// TestDashboardsSplitByCause: every panel querying a metric of causeLabels keeps its cause label (no aggregation, or
// one "by" it).
func TestDashboardsSplitByCause(t *testing.T) {
	for metric, c := range causeLabels {
		src, err := os.ReadFile(filepath.Join(repoRoot, c.source))
		if err != nil || !strings.Contains(string(src), `"`+c.label+`"`) {
			t.Errorf("%s no longer sets the label %s (%v): follow %s here", c.source, c.label, err, metric)
		}
	}
	files, _ := filepath.Glob("observability/grafana/dashboards/*.json")
	aggregation := regexp.MustCompile(`\b(?:sum|max|min|avg|count)\b`)
	by := regexp.MustCompile(`\b(?:sum|max|min|avg|count)\s+by\s*\(([^)]*)\)`)
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for metric, c := range causeLabels {
					if !regexp.MustCompile(`\b` + metric + `\b`).MatchString(tg.Expr) {
						continue
					}
					checked++
					kept := !aggregation.MatchString(tg.Expr)
					if m := by.FindStringSubmatch(tg.Expr); m != nil {
						for _, l := range strings.Split(m[1], ",") {
							kept = kept || strings.TrimSpace(l) == c.label
						}
					}
					if !kept {
						t.Errorf("%s: panel %q queries %q, which sums %s's %s away", filepath.Base(file), p.Title, tg.Expr, metric, c.label)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no panel queries a metric of causeLabels: the dashboards' shape changed, follow it here")
	}
}

// TestBridgeDashboardTakesOnePartitionsLagOnce: a partition's lag is exported by the bridge instance that owns it, and
// during a handover by two (the old owner forgets its series once its sessions and drain have ended; leg B's can be
// held up to the Pulsar client's 30 s operation timeout, opening a producer while Pulsar is away). Summed, the panels
// showed that partition's lag doubled at each rebalance; the largest is the partition's lag.
func TestBridgeDashboardTakesOnePartitionsLagOnce(t *testing.T) {
	d := bridgeDashboard(t)
	seen := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, gauge := range []string{"bridge_consumer_lag", "bridge_archive_lag"} {
				if !regexp.MustCompile(`\b` + gauge + `\b`).MatchString(tg.Expr) {
					continue
				}
				seen++
				if !regexp.MustCompile(`^\s*max by \(topic, partition\) \(` + gauge + `\)\s*$`).MatchString(tg.Expr) {
					t.Errorf("panel %q: %s, want max by (topic, partition) (%s)", p.Title, tg.Expr, gauge)
				}
			}
		}
	}
	if seen != 2 {
		t.Errorf("%d panels plot a partition's lag, want 2 (leg A's and leg B's)", seen)
	}
}

// TestBridgeDashboardShowsTheFirstLoss: bridge_stream_lost_total appears at its first count, with every record of that
// loss in it, and increase() needs a sample before: the panel plotted increase() alone and showed 0 for the first loss
// of each bridge process, which is mostly the only one. It takes the series that appeared in the window as well, as
// the alert BridgeStreamLostUnarchived does.
func TestBridgeDashboardShowsTheFirstLoss(t *testing.T) {
	d := bridgeDashboard(t)
	seen := false
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "bridge_stream_lost_total") {
				continue
			}
			seen = true
			if !strings.Contains(tg.Expr, "bridge_stream_lost_total unless bridge_stream_lost_total offset") {
				t.Errorf("panel %q: %s leaves out a series that appeared in its window (its first count)", p.Title, tg.Expr)
			}
		}
	}
	if !seen {
		t.Error("no panel plots bridge_stream_lost_total")
	}
}

// TestBridgeDashboardShowsEachFirstCount: every bridge panel plotting a counter's increase() takes the series that
// appeared within its window as well, as the stream-lost panel does (TestBridgeDashboardShowsTheFirstLoss). The dead
// letters, failed fetches and offset resets panels plotted increase() alone, so each process's first dead letter of a
// reason, first failed fetch of a partition and first reset (mostly the only one) showed as 0.
func TestBridgeDashboardShowsEachFirstCount(t *testing.T) {
	counter := regexp.MustCompile(`increase\((bridge_[a-z_]+_total)\[`)
	for _, p := range bridgeDashboard(t).Panels {
		for _, tg := range p.Targets {
			for _, m := range counter.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.Contains(tg.Expr, m[1]+" unless "+m[1]+" offset") {
					t.Errorf("panel %q: %s leaves out a series of %s that appeared in its window (its first count)", p.Title, tg.Expr, m[1])
				}
			}
		}
	}
}

// bridgeDashboard is the bridge's Grafana dashboard: its panels' titles and queries.
func bridgeDashboard(t *testing.T) (d struct {
	Panels []struct {
		Title   string
		Targets []struct{ Expr string }
	}
}) {
	t.Helper()
	raw, err := os.ReadFile("observability/grafana/dashboards/bridge.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}
