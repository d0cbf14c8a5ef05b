package deploy

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// alertRulesFile is the one rule file compose and Kubernetes both load, as they share the dashboards.
const alertRulesFile = "observability/prometheus/alerts.yml"

// ruleFile is a Prometheus rule file; unknown fields are refused, as Prometheus refuses them.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

func loadAlertRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatalf("read alert rules: %v", err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	return f
}

// watchedAlarms are the signals an operator must hear of without watching a dashboard, by the selector a rule's
// expression must hold: a payment result contradicting its order (money taken for a failed order, or an order paid
// on a charge payment disowns), the payments the settle round had to void or refund because a dead letter left them
// charged, the settle round itself failing, and dead letters piling up, recorded or not, in payment and in the
// bridge; the bridge's archive stalled on an unreadable Pulsar size policy, and a partition held at a dead letter the DLQ
// refuses, a partition leg A cannot fetch (continuously: its readiness rule, not each failed fetch), a position leg A found outside its partition (a recreated topic, records
// retention removed before they were carried), a stream window too short for leg A's republish, and the two losses to
// the archive the bridge counts: messages the stream removed before leg B archived them, and a partition stored out of
// offset order (Pulsar's dedup drops the lower offsets), and the archive stalled with messages waiting (Pulsar away),
// per instance and per partition (one held while the instance's others archive);
// orders the order service cancelled because payment never answered (each an order's payment the saga
// lost), and its expiry round failing (those orders then stay PENDING). None had a rule.
var watchedAlarms = []string{
	`shanhai_order_payment_events_total{outcome="contradicts"}`,
	`shanhai_payment_settled_total`,
	`shanhai_payment_settle_failures_total`,
	`shanhai_payment_dead_letters_total`,
	`shanhai_payment_dead_letters_unrecorded_total`,
	`bridge_dlq_total`,
	`bridge_pulsar_policy_waiting`,
	`bridge_dlq_waiting`,
	`bridge_partition_unfetchable`,
	`bridge_offset_resets_total`,
	`bridge_stream_window_short`,
	`bridge_stream_lost_total`,
	`bridge_messages_total{result="order_violation"}`,
	`bridge_archive_lag`,
	`bridge_archive_progress_timestamp_seconds`,
	`shanhai_order_expired_total`,
	`shanhai_order_expiry_failures_total`,
}

// TestAlertRulesWatchTheSagasAlarms: each of watchedAlarms has an alert rule.
func TestAlertRulesWatchTheSagasAlarms(t *testing.T) {
	f := loadAlertRules(t)
	for _, want := range watchedAlarms {
		found := false
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				found = found || regexp.MustCompile(`\b`+regexp.QuoteMeta(want)+`(?:[^a-z0-9_]|$)`).MatchString(r.Expr)
			}
		}
		if !found {
			t.Errorf("no alert rule in %s watches %s", alertRulesFile, want)
		}
	}
}

// promQLWords are the PromQL keywords that read like series names.
var promQLWords = []string{"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan"}

// seriesNames are the metric names a PromQL expression selects: its identifiers less functions (followed by "("),
// keywords, label lists of by/without/on/ignoring, label matchers in braces, strings and durations.
func seriesNames(expr string) []string {
	expr = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`)
	expr = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(expr, ` `)
	expr = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(expr, ` `)
	expr = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(expr, ` `)
	var names []string
	// The character before a name is checked by hand, not matched: a match that took it would also take the "(" of
	// "increase(" and so skip the name right after it, which is where most series stand.
	ident := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)`)
	for _, m := range ident.FindAllStringSubmatchIndex(expr, -1) {
		name, call := expr[m[2]:m[3]], m[5] > m[4]
		if m[0] > 0 && strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.", rune(expr[m[0]-1])) {
			continue // the tail of a number such as 1e3, or of a name already taken
		}
		if call || slices.Contains(promQLWords, strings.ToLower(name)) {
			continue
		}
		names = append(names, name)
	}
	return names
}

// goStringLiterals are the double-quoted strings of the repository's Go sources (tests excluded): a label value a rule
// matches must be one some binary sets.
func goStringLiterals(t *testing.T) map[string]bool {
	t.Helper()
	lits := map[string]bool{}
	lit := regexp.MustCompile(`"((?:[^"\\\n]|\\.)*)"`)
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "var" || d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			lits[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lits
}

// TestAlertRulesQueryWhatTheCodeExports: every series a rule selects is a metric some binary defines, every label value
// it matches exactly is one the code sets, and the expression's brackets balance. promtool is not installed here, so
// this is the check that a renamed metric or outcome fails a test instead of silencing an alert for ever.
func TestAlertRulesQueryWhatTheCodeExports(t *testing.T) {
	f := loadAlertRules(t)
	defined := definedMetrics(t)
	lits := goStringLiterals(t)
	matcher := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"`)
	braces := regexp.MustCompile(`\{[^}]*\}`)
	checked := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			for _, name := range seriesNames(r.Expr) {
				checked++
				if !defined(name) {
					t.Errorf("alert %s selects %s, which no binary exports", r.Alert, name)
				}
			}
			for _, sel := range braces.FindAllString(r.Expr, -1) {
				for _, m := range matcher.FindAllStringSubmatch(sel, -1) {
					if m[1] != "service" && !lits[m[2]] { // service is the scrape config's label, not the code's
						t.Errorf("alert %s matches %s=%q, a value no Go source sets", r.Alert, m[1], m[2])
					}
				}
			}
			stack := []rune{}
			pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
			for _, c := range r.Expr {
				switch c {
				case '(', '[', '{':
					stack = append(stack, c)
				case ')', ']', '}':
					if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
						t.Errorf("alert %s: unbalanced %q in %q", r.Alert, c, r.Expr)
						stack = append(stack, 0)
					}
					stack = stack[:len(stack)-1]
				}
			}
			if len(stack) != 0 {
				t.Errorf("alert %s: unclosed brackets in %q", r.Alert, r.Expr)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no series name found in any rule: the rules' shape changed, follow it here")
	}
}

// TestAlertRulesTellWhatToDo: every rule is an alert with a unique name, a severity, a duration Prometheus reads, and
// runbook-style annotations: a summary, a description of what happened and what it costs, and a runbook URL into
// this repository's README that explains the signal.
func TestAlertRulesTellWhatToDo(t *testing.T) {
	f := loadAlertRules(t)
	seen := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("group %s: alert name %q empty or repeated", g.Name, r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.For != "" {
				// Prometheus durations also take d, w and y; these rules keep to what both read alike.
				if _, err := time.ParseDuration(r.For); err != nil || !regexp.MustCompile(`^[0-9]+[smh]$`).MatchString(r.For) {
					t.Errorf("alert %s: for %q is not a plain duration", r.Alert, r.For)
				}
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			file, ok := strings.CutPrefix(r.Annotations["runbook_url"], "https://github.com/shanhai-dev/shanhai/blob/main/")
			file, _, _ = strings.Cut(file, "#")
			if _, err := os.Stat(filepath.Join(repoRoot, file)); !ok || err != nil {
				t.Errorf("alert %s: runbook_url %q is not a file of this repository", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
}

// ruleFilesGlobs reads a prometheus.yml's rule_files.
func ruleFilesGlobs(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c.RuleFiles
}

// loadsRules says whether a container path is one of a Prometheus's rule_files.
func loadsRules(globs []string, file string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, file); ok {
			return true
		}
	}
	return false
}

// TestPrometheusLoadsTheAlertRules: compose's and the kind cluster's Prometheus both load the one rule file, at a path
// their rule_files name, so the alerts cannot differ between them.
func TestPrometheusLoadsTheAlertRules(t *testing.T) {
	want, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}

	globs := ruleFilesGlobs(t, "compose/prometheus/prometheus.yml")
	p := loadCompose(t)
	prom, ok := p.Services["prometheus"]
	if !ok {
		t.Fatal("compose: no prometheus service")
	}
	abs, err := filepath.Abs(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, v := range prom.Volumes {
		if v.Source == abs && loadsRules(globs, v.Target) {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("compose: prometheus does not mount %s at a path its rule_files %q name", alertRulesFile, globs)
	}

	globs = ruleFilesGlobs(t, "k8s/components/infra/resources/prometheus.yml")
	objs := build(t, "k8s/overlays/kind")
	cms := map[string]map[string]string{}
	for _, o := range objs {
		if cm, ok := o.Value.(*corev1.ConfigMap); ok {
			cms[o.Namespace+"/"+o.Name] = cm.Data
		}
	}
	mounted = false
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok || o.Name != "prometheus" {
			continue
		}
		spec := d.Spec.Template.Spec
		for _, c := range spec.Containers {
			for _, m := range c.VolumeMounts {
				for _, v := range spec.Volumes {
					if v.Name != m.Name {
						continue
					}
					// A ConfigMap's keys as files, alone or among a projected volume's sources.
					var sources []corev1.ConfigMapProjection
					if v.ConfigMap != nil {
						sources = append(sources, corev1.ConfigMapProjection{LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items})
					}
					if v.Projected != nil {
						for _, s := range v.Projected.Sources {
							if s.ConfigMap != nil {
								sources = append(sources, *s.ConfigMap)
							}
						}
					}
					for _, s := range sources {
						data := cms[o.Namespace+"/"+s.Name]
						files := map[string]string{}
						for k := range data {
							files[k] = k
						}
						if len(s.Items) > 0 {
							files = map[string]string{}
							for _, it := range s.Items {
								files[it.Key] = it.Path
							}
						}
						for key, rel := range files {
							if data[key] == string(want) && loadsRules(globs, path.Join(m.MountPath, rel)) {
								mounted = true
							}
						}
					}
				}
			}
		}
	}
	if !mounted {
		t.Errorf("Kubernetes: prometheus does not mount a ConfigMap holding %s at a path its rule_files %q name", alertRulesFile, globs)
	}
}

// TestAlertRulesOverALevelWaitTheirFor: a rule without `for:` fires at the first evaluation its expression holds, so
// only the first-count rules (a counter's increase, or its series appearing) may leave it out. A rule that selects a
// gauge, a level a process sets as soon as it starts, needs one: BridgeArchiveStalled had none, and a bridge that
// started with a backlog (bridge_archive_lag > 0 at its first delivery, bridge_messages_total{result="ok"} not yet
// exported) paged "archived nothing for 15 minutes" at its first evaluation, seconds after the start.
func TestAlertRulesOverALevelWaitTheirFor(t *testing.T) {
	for _, g := range loadAlertRules(t).Groups {
		for _, r := range g.Rules {
			if r.For != "" {
				continue
			}
			for _, name := range seriesNames(r.Expr) {
				if !strings.HasSuffix(name, "_total") {
					t.Errorf("alert %s: selects %s, a level, without a for: it fires at the first evaluation", r.Alert, name)
				}
			}
		}
	}
}
