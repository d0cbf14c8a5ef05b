package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// NATSServerBinary finds the nats-server binary at the version scripts/deps.sh
// pins (NATSVersion), for a test or harness that runs a private server it may
// reconfigure or kill (pkg/stream's auth change, the bridge's fault tests):
// the one deps.sh builds into its cache ($SHANHAI_CACHE/bin, default
// ~/.cache/shanhai/bin), else one on PATH that reports that version.
//
// The newest cached binary by file name was taken before, and
// "nats-server-v2.9.0" sorts after "nats-server-v2.14.9": a cache holding
// both ran the tests on 2.9, which lacks what the pin was chosen for.
func NATSServerBinary() (string, error) {
	version, err := NATSVersion()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("SHANHAI_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "shanhai")
	}
	bin := filepath.Join(cache, "bin", "nats-server-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if onPath, err := exec.LookPath("nats-server"); err == nil {
		out, _ := exec.Command(onPath, "--version").Output()
		if strings.TrimSpace(string(out)) == "nats-server: "+version {
			return onPath, nil
		}
	}
	return "", fmt.Errorf("no nats-server %s in %s/bin or on PATH: %s", version, cache, Hint)
}

// natsVersionLine is scripts/deps.sh's pin, as the script sets it.
var natsVersionLine = regexp.MustCompile(`(?m)^NATS_VERSION=(v[0-9][^\s#]*)`)

// NATSVersion reads NATS_VERSION from the scripts/deps.sh of the workspace
// the working directory is in (the first directory up with a go.work): a
// test runs in its package's directory, a harness from the repository.
func NATSVersion() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find scripts/deps.sh: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory: cannot read scripts/deps.sh's NATS_VERSION")
		}
		dir = parent
	}
	script, err := os.ReadFile(filepath.Join(dir, "scripts", "deps.sh"))
	if err != nil {
		return "", fmt.Errorf("read the pinned nats-server version: %w", err)
	}
	m := natsVersionLine.FindSubmatch(script)
	if m == nil {
		return "", fmt.Errorf("%s sets no NATS_VERSION", filepath.Join(dir, "scripts", "deps.sh"))
	}
	return string(m[1]), nil
}
