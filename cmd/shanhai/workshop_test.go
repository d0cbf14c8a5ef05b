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
