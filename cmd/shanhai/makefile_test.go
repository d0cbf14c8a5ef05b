package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A newcomer's first `make` (or `make help`) lists what there is to run, each
// target with what it does, instead of starting `make test`: the servers,
// apt packages and a 245 MB Pulsar download, then half an hour of tests.
// Every target the Makefile defines must be listed, so a new one cannot be
// left out.
func TestMakeHelpListsEveryTarget(t *testing.T) {
	root := filepath.Join("..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`(?m)^([a-z][a-z-]*):`).FindAllStringSubmatch(string(mk), -1)
	if len(targets) < 10 {
		t.Fatalf("found %d targets in the Makefile, want the dozen it has", len(targets))
	}
	cmd := exec.Command("make", "-s", "--no-print-directory", "help")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	for _, m := range targets {
		// "  name   what it does": the name, spaces, then some words.
		line := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(m[1]) + `\s{2,}\S.*$`)
		if !line.Match(out) {
			t.Errorf("make help does not list target %q with a description:\n%s", m[1], out)
		}
	}
	// A bare make is make help: compared as dry runs (-n prints a recipe
	// instead of running it), so a wrong default goal cannot start make test.
	dry := func(args ...string) string {
		cmd := exec.Command("make", append([]string{"-n", "-s", "--no-print-directory"}, args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if bare, help := dry(), dry("help"); bare != help {
		t.Errorf("a bare make would run\n%s\nnot make help's\n%s", bare, help)
	}
}
