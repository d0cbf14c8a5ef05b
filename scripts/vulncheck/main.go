// Command vulncheck runs govulncheck once over every module of the go.work workspace and fails when the code
// reaches a known vulnerability that allow.txt does not accept with a reason.
//
//	go run ./scripts/vulncheck            (from the repository root; make test runs it)
//
// It adds two things govulncheck leaves to its caller:
//   - Reviewed findings. Some vulnerabilities have no fixed version yet; allow.txt names each one accepted, the module
//     it is in and why. A listed finding that no longer appears fails the check too, so the list cannot outlive its
//     reasons.
//   - The database. vuln.go.dev is used when it answers. A machine that reaches only package registries builds the
//     same data locally: the golang.org/x/vulndb module on the Go module proxy carries every report as OSV JSON
//     (data/osv), and its own cmd/indexdb writes the database govulncheck reads. -vulndb pins that module's version;
//     bump it with `go list -m golang.org/x/vulndb@latest`.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

//go:embed allow.txt
var allowText string

func main() {
	govulncheck := flag.String("govulncheck", "v1.10.0", "version of golang.org/x/vuln/cmd/govulncheck")
	vulndb := flag.String("vulndb", "v0.0.0-20261105234957-e22db6528018",
		"version of the golang.org/x/vulndb module to build the database from when vuln.go.dev does not answer")
	cache := flag.String("cache", defaultCache(), "where the locally built database is kept")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *govulncheck, *vulndb, *cache); err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

func defaultCache() string {
	if c := os.Getenv("SHANHAI_CACHE"); c != "" {
		return c
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "shanhai")
}

func run(ctx context.Context, out io.Writer, govulncheck, vulndb, cache string) error {
	allow, err := parseAllow(allowText)
	if err != nil {
		return fmt.Errorf("allow.txt: %w", err)
	}
	dirs, err := goOutput(ctx, true, "list", "-m", "-f", "{{.Dir}}")
	if err != nil {
		return fmt.Errorf("list the workspace modules (run from inside the repository): %w", err)
	}
	modules := strings.Fields(dirs)
	if len(modules) == 0 {
		return errors.New("no modules in go.work")
	}
	db, err := database(ctx, vulndb, cache)
	if err != nil {
		return err
	}
	// One run over every module's packages shares the loading and call graph of the common dependencies;
	// govulncheck wants a go.mod in its working directory, so it starts in the first module.
	args := []string{"run", "golang.org/x/vuln/cmd/govulncheck@" + govulncheck, "-db", db, "-format", "json"}
	for _, m := range modules {
		args = append(args, m+"/...")
	}
	fmt.Fprintf(out, "vulncheck: govulncheck %s over %d modules, database %s\n", govulncheck, len(modules), db)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = modules[0]
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("govulncheck: %w", err)
	}
	rep, perr := parse(stdout)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("govulncheck: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("govulncheck output: %w", perr)
	}
	if failed := report(out, rep, allow); failed > 0 {
		return fmt.Errorf("%d lines above need attention: upgrade the module, or review and record the finding in scripts/vulncheck/allow.txt", failed)
	}
	return nil
}

// database returns the -db argument: vuln.go.dev when it answers, else a file URL of the database built from the
// golang.org/x/vulndb module at version (built once per version).
func database(ctx context.Context, version, cache string) (string, error) {
	const online = "https://vuln.go.dev"
	c := http.Client{Timeout: 5 * time.Second}
	if resp, err := c.Head(online + "/index/db.json"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return online, nil
		}
	}
	dir := filepath.Join(cache, "vulndb-"+version)
	if _, err := os.Stat(filepath.Join(dir, "index", "db.json")); err == nil {
		return "file://" + dir, nil
	}
	src, err := goOutput(ctx, false, "mod", "download", "-json", "golang.org/x/vulndb@"+version)
	if err != nil {
		return "", fmt.Errorf("vuln.go.dev does not answer, and golang.org/x/vulndb@%s cannot be downloaded: %w", version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal([]byte(src), &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download golang.org/x/vulndb@%s gave no directory: %v", version, err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, "vulndb.")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// indexdb writes into -out, which must not exist yet.
	built := filepath.Join(tmp, "db")
	if _, err := goOutput(ctx, false, "run", "golang.org/x/vulndb/cmd/indexdb@"+version,
		"-vulns", filepath.Join(mod.Dir, "data", "osv"), "-out", built); err != nil {
		return "", fmt.Errorf("build the vulnerability database from golang.org/x/vulndb@%s: %w", version, err)
	}
	if err := os.Rename(built, dir); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return "file://" + dir, nil
}

// goOutput runs the go command and returns its standard output; its standard error goes into the error. Outside
// the workspace (GOWORK=off) for the tools, which are not the repository's modules and must not change its build list.
func goOutput(ctx context.Context, workspace bool, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	if !workspace {
		cmd.Env = append(os.Environ(), "GOWORK=off")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(b), nil
}
