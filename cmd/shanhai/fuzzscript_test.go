package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// scripts/fuzz-gateway.sh with a target name that is none of its targets
// (a typo) refuses it; it ran nothing and exited 0, a clean fuzz run.
func TestFuzzGatewayRefusesAnUnknownTarget(t *testing.T) {
	cmd := exec.Command(filepath.Join("..", "..", "scripts", "fuzz-gateway.sh"), "FuzzSanitise")
	cmd.Env = append(os.Environ(), "LOG="+t.TempDir(), "FUZZTIME=1s")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "no target FuzzSanitise") {
		t.Fatalf("fuzz-gateway.sh FuzzSanitise: %v, want exit status 2 naming the unknown target; output:\n%s", err, out)
	}
}

// Every fuzz target the gateway has is in the script's list, which says it
// runs them all.
func TestFuzzGatewayListsEveryTarget(t *testing.T) {
	root := filepath.Join("..", "..")
	script, err := os.ReadFile(filepath.Join(root, "scripts", "fuzz-gateway.sh"))
	if err != nil {
		t.Fatal(err)
	}
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	err = filepath.WalkDir(filepath.Join(root, "gateway"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(strings.TrimPrefix(filepath.Dir(path), filepath.Join(root, "gateway")+string(filepath.Separator)))
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(src), -1) {
			if !strings.Contains(string(script), `"`+pkg+" "+m[1]+`"`) {
				t.Errorf("scripts/fuzz-gateway.sh does not run %s in %s", m[1], pkg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
