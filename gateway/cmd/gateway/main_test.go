package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainEnv makes the test binary run main instead of the tests, so the
// binary's own output is checked without a separate build.
const runMainEnv = "GATEWAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A bad configuration is printed as the other binaries print it: the
// binary's name, then one line per bad variable, and exit status 2.
func TestBadConfigurationIsReportedByName(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "GATEWAY_MODE=x", "GATEWAY_MAX_ATTEMPTS="}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("want exit status 2, got %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "gateway: invalid configuration (2 problems):" ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "GATEWAY_MAX_ATTEMPTS: ") ||
		!strings.HasPrefix(strings.TrimSpace(lines[2]), "GATEWAY_MODE: ") {
		t.Fatalf("unexpected report:\n%s", out)
	}
}

// A REDIS_URL the gateway cannot use stops it with an error that names the
// mistake without printing the password: the line lands in logs that more
// people read than hold the secret.
func TestBadRedisURLHidesItsPassword(t *testing.T) {
	for _, url := range []string{
		"redis://:s3cr%zzet@127.0.0.1:1/0", // an unencoded '%' in the password
		"redis://:s3cr#et@127.0.0.1:1/0",   // an unencoded '#': go-redis dials "et" with password "s3cr"
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "REDIS_URL=" + url,
			"ETCD_ENDPOINTS=", "DISCOVERY_STATIC=order=127.0.0.1:1", "HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR="}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%s: the gateway started; want it to refuse the URL:\n%s", url, out)
		}
		if strings.Contains(string(out), "s3cr") {
			t.Errorf("%s: the error shows the password:\n%s", url, out)
		}
		if !strings.Contains(string(out), "REDIS_URL") {
			t.Errorf("%s: the error does not name REDIS_URL:\n%s", url, out)
		}
	}
}
