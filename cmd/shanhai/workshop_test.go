package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The workshop's labs (docs/workshop) end in checkpoints, `go test -run`
// commands, and send the reader to code by its path. A test renamed or a
// package moved leaves a checkpoint that matches nothing, which Go only
// warns about ("no tests to run") and the reader takes for a pass; a path
// gone sends the reader nowhere. These tests read the labs as they are
// written and check both against the tree, without running anything.

const repoRoot = "../.."

// workshopLabs returns every page of the workshop by its name.
func workshopLabs(t *testing.T) map[string]string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "workshop", "*.md"))
	if err != nil || len(pages) < 8 {
		t.Fatalf("workshop pages: %v (%d found, want the README and seven labs)", err, len(pages))
	}
	labs := map[string]string{}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		labs[filepath.Base(p)] = string(b)
	}
	return labs
}

// goTestCommand is `( cd dir && [sudo] go test ... )` or a bare `go test ...`,
// up to the end of the command (a closing parenthesis, a backtick, a
// comment or the end of the line).
var goTestCommand = regexp.MustCompile("(?:cd ([^ `()]+) && )?(?:sudo )?go test ([^`)#\n]*)")

var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(\w+ \*testing\.T\)`)

// testNames lists the Test functions of the package pattern pkg (./x, or
// ./x/... with the packages below it) relative to dir.
func testNames(t *testing.T, dir, pkg string) []string {
	t.Helper()
	base, recursive := strings.CutSuffix(pkg, "/...")
	base = filepath.Join(dir, base)
	var names []string
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != base && (!recursive || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
			names = append(names, m[1])
		}
		return nil
	})
	if err != nil {
		t.Errorf("package %s: %v", pkg, err)
	}
	return names
}

// Every name a checkpoint's -run alternates between matches a test of the
// packages that command names.
func TestWorkshopCheckpointsNameTestsThatExist(t *testing.T) {
	commands := 0
	for page, text := range workshopLabs(t) {
		for _, m := range goTestCommand.FindAllStringSubmatch(text, -1) {
			dir := filepath.Join(repoRoot, m[1])
			var run string
			var names []string
			fields := strings.Fields(m[2])
			for i, f := range fields {
				switch {
				case f == "-run" && i+1 < len(fields):
					run = strings.Trim(fields[i+1], `'"`)
				case strings.HasPrefix(f, "."):
					names = append(names, testNames(t, dir, f)...)
				}
			}
			if run == "" || strings.HasPrefix(run, "<") {
				continue // no -run, or a placeholder the reader fills in
			}
			commands++
			for _, alt := range strings.Split(run, "|") {
				re, err := regexp.Compile(alt)
				if err != nil {
					t.Errorf("%s: %q: -run %q: %v", page, m[0], alt, err)
					continue
				}
				found := false
				for _, n := range names {
					found = found || re.MatchString(n)
				}
				if !found {
					t.Errorf("%s: %q: -run %q matches no test in those packages", page, strings.TrimSpace(m[0]), alt)
				}
			}
		}
	}
	if commands < 15 {
		t.Fatalf("found %d checkpoint commands in the workshop, want the twenty or so it has", commands)
	}
}

// repoPath is a path into this repository as the labs write one in
// backticks: a top-level directory, then more of the path.
var repoPath = regexp.MustCompile("`((?:pkg|services|gateway|bridge|bpf|cmd|deploy|docs|scripts|e2e)/[A-Za-z0-9_.*/-]+)`")

// Every path a lab sends the reader to is in the tree.
func TestWorkshopPathsExist(t *testing.T) {
	paths := 0
	for page, text := range workshopLabs(t) {
		for _, m := range repoPath.FindAllStringSubmatch(text, -1) {
			paths++
			found, err := filepath.Glob(filepath.Join(repoRoot, strings.TrimSuffix(m[1], "/")))
			if err != nil || len(found) == 0 {
				t.Errorf("%s: `%s` is not in the repository", page, m[1])
			}
		}
	}
	if paths < 30 {
		t.Fatalf("found %d paths in the workshop, want the forty or so it names", paths)
	}
}

// sourceText is every Go source file (tests left out), docs/configuration.md
// and the scripts of the parts the labs run, as one text: what a name the
// labs quote must be found in.
func sourceText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, dir := range []string{"pkg", "services", "gateway", "bridge", "bpf", "cmd", "e2e"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			b.Write(src)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	b.Write(cfg)
	return b.String()
}

var (
	// envName is a variable as the labs write one: upper case with an underscore.
	envName = regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b`)
	// metricName is a Prometheus series as the labs write one, and the
	// suffixes the exporter adds to the instrument's name.
	metricName   = regexp.MustCompile(`\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+_(?:total|count|bucket|sum|seconds)\b`)
	metricSuffix = regexp.MustCompile(`(?:_total|_count|_bucket|_sum)?(?:_seconds|_bytes)?$`)
)

// Every variable a lab sets or names, and every metric it greps for, is
// still read or exported under that name: a renamed variable would be
// ignored without a word, and a renamed metric greps to nothing.
func TestWorkshopVariablesAndMetricsExist(t *testing.T) {
	src := sourceText(t)
	underscored := strings.ReplaceAll(src, ".", "_") // an instrument's dots are the series' underscores
	vars, metrics := 0, 0
	for page, text := range workshopLabs(t) {
		for _, name := range envName.FindAllString(text, -1) {
			vars++
			if !strings.Contains(src, `"`+name+`"`) && !strings.Contains(src, "`"+name+"`") {
				t.Errorf("%s: variable %s is read by no binary and not in docs/configuration.md", page, name)
			}
		}
		for _, name := range metricName.FindAllString(text, -1) {
			metrics++
			base := metricSuffix.ReplaceAllString(name, "")
			if !strings.Contains(underscored, `"`+base) {
				t.Errorf("%s: metric %s (instrument %s) is exported by nothing", page, name, base)
			}
		}
	}
	if vars < 20 || metrics < 4 {
		t.Fatalf("found %d variables and %d metrics in the workshop, want the thirty and five or so it names", vars, metrics)
	}
}

// workshopLogLines are the log messages the labs tell the reader to grep
// for, by the page that quotes them. Each must still be logged with those
// words: the reader greps for them, not for what the code says today. A
// message is looked for as a string literal, whole or up to a colon, not
// as any text: a one-word message such as "request" is in most files.
var workshopLogLines = map[string][]string{
	"01-monolith-to-services.md":  {"exited on its own"},
	"04-events-and-the-bridge.md": {"order charged", "payment result handled", "Pulsar leg off"},
	"05-observability.md":         {"request", "order charged"},
	"06-resilience-and-faults.md": {"order event will be retried", "message dead-lettered", "cancelled orders left PENDING past ORDER_PENDING_TIMEOUT"},
	"03-gateway-and-limits.md":    {"X-User-ID does not match the access token"},
}

func TestWorkshopLogLinesExist(t *testing.T) {
	src := sourceText(t)
	labs := workshopLabs(t)
	for page, lines := range workshopLogLines {
		for _, line := range lines {
			if !strings.Contains(strings.Join(strings.Fields(labs[page]), " "), line) {
				t.Errorf("%s no longer quotes %q: update workshopLogLines", page, line)
			}
			if !strings.Contains(src, `"`+line+`"`) && !strings.Contains(src, `"`+line+`:`) {
				t.Errorf("%s quotes %q, which no code logs or answers any more", page, line)
			}
		}
	}
}
