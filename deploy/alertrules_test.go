package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtoolTests are the promtool unit tests of the alert rules: series over time and the alerts they must fire, when.
const promtoolTests = "testdata/alerts_promtool.yml"

// TestAlertRulesUnderPromtool runs promtool's unit tests of the alert rules (promtool test rules): the other alert
// tests read the rules' text, which says nothing of whether an expression matches the series it should, nor when it
// fires. BridgeArchiveStalled's per-instance match and its for: had no test. promtool comes from Debian's prometheus
// package, which scripts/deps.sh tools unpacks into its cache (make test runs it); the test fails without it, as tests
// do without their servers. The rules are copied without their annotations, which promtool would compare whole.
func TestAlertRulesUnderPromtool(t *testing.T) {
	promtool := promtoolPath(t)
	raw, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	groups, _ := rules["groups"].([]any)
	for _, g := range groups {
		rs, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rs {
			delete(r.(map[string]any), "annotations")
		}
	}
	stripped, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(promtoolTests)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), stripped, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "tests.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", promtoolTests, err, out)
	}
}

// promtoolPath is scripts/deps.sh's promtool ($SHANHAI_CACHE/bin, by default ~/.cache/shanhai/bin), else one on PATH.
func promtoolPath(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("SHANHAI_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "shanhai")
	}
	if p := filepath.Join(cache, "bin", "promtool"); fileExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Fatalf("promtool not found in %s/bin or on PATH: scripts/deps.sh tools fetches it (make test does; Debian package prometheus, unpacked)", cache)
	return ""
}

func fileExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
