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
	metric := regexp.MustCompile(`[a-z][a-z0-9_]*(?:\{|\[)`)
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
				for _, m := range metric.FindAllString(tg.Expr, -1) {
					name := strings.TrimRight(m, "{[")
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
