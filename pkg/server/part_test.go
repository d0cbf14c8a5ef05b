package server

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

type partConfig struct {
	Name string `env:"PART_TEST_NAME" envDefault:"from-default" desc:"a name"`
}

func TestPartLoadConfigReadsEnvOrProcess(t *testing.T) {
	t.Setenv("PART_TEST_NAME", "from-process")

	var hosted partConfig
	if err := (Part{Env: map[string]string{"PART_TEST_NAME": "from-host"}}).LoadConfig(&hosted); err != nil {
		t.Fatal(err)
	}
	if hosted.Name != "from-host" {
		t.Errorf("hosted part read %q, want the host's env, not the process's", hosted.Name)
	}

	var alone partConfig
	if err := (Part{}).LoadConfig(&alone); err != nil {
		t.Fatal(err)
	}
	if alone.Name != "from-process" {
		t.Errorf("binary read %q, want the process environment", alone.Name)
	}

	var empty partConfig
	if err := (Part{Env: map[string]string{}}).LoadConfig(&empty); err != nil {
		t.Fatal(err)
	}
	if empty.Name != "from-default" {
		t.Errorf("hosted part with no variables read %q, want the default (never the process's)", empty.Name)
	}
}

func TestPartLogKeepsTheHostsLoggerAndDefault(t *testing.T) {
	before := slog.Default()
	t.Cleanup(func() { slog.SetDefault(before) })

	given := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	if got := (Part{Logger: given}).LogAt(&bytes.Buffer{}, slog.LevelDebug); got != given {
		t.Error("a given logger was replaced")
	}
	if slog.Default() != before {
		t.Error("a hosted part changed slog's default")
	}

	var out bytes.Buffer
	log := (Part{}).LogAt(&out, slog.LevelWarn)
	log.Info("dropped")
	log.Warn("kept")
	if slog.Default() != log {
		t.Error("a binary's logger did not become slog's default")
	}
	if s := out.String(); strings.Contains(s, "dropped") || !strings.Contains(s, `"msg":"kept"`) {
		t.Errorf("want JSON at LOG_LEVEL warn, got %q", s)
	}
}

type partServiceConfig struct {
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
}

// A start with bad configuration lists every bad variable in one message
// (exit 2), PAGEOUT_AFTER_READY among them: a service returns LoadConfig's
// error before RunService reads it, so LoadConfig must name it too, from the
// host's variables or the process's.
func TestPartLoadConfigListsABadPageoutWithTheRest(t *testing.T) {
	bad := map[string]string{"SHUTDOWN_TIMEOUT": "soon", "PAGEOUT_AFTER_READY": "maybe"}
	check := func(name string, err error) {
		t.Helper()
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			t.Fatalf("%s: got %v, want a *config.Error", name, err)
		}
		var got []string
		for _, v := range cerr.Vars {
			got = append(got, v.Var)
		}
		if want := []string{"PAGEOUT_AFTER_READY", "SHUTDOWN_TIMEOUT"}; !slices.Equal(got, want) {
			t.Errorf("%s: bad variables %v, want %v (one message, sorted); error:\n%v", name, got, want, err)
		}
	}
	var hosted partServiceConfig
	check("host's variables", (Part{Env: bad}).LoadConfig(&hosted))

	for k, v := range bad {
		t.Setenv(k, v)
	}
	var alone partServiceConfig
	check("process environment", (Part{}).LoadConfig(&alone))

	// Alone, a bad PAGEOUT_AFTER_READY is still refused; a good one is not.
	var only partServiceConfig
	if err := (Part{Env: map[string]string{"PAGEOUT_AFTER_READY": "maybe"}}).LoadConfig(&only); err == nil || !strings.Contains(err.Error(), "PAGEOUT_AFTER_READY") {
		t.Errorf("PAGEOUT_AFTER_READY=maybe alone: got %v, want it named", err)
	}
	if err := (Part{Env: map[string]string{"PAGEOUT_AFTER_READY": "false"}}).LoadConfig(&only); err != nil {
		t.Errorf("PAGEOUT_AFTER_READY=false: %v", err)
	}
}

// Under CheckOnly a good configuration stops Run at its LoadConfig with
// ErrConfigChecked (Run returns LoadConfig's error before it starts
// anything), and a bad one is the usual *config.Error, every variable named.
func TestPartCheckOnlyStopsAtTheLoadedConfig(t *testing.T) {
	var good partConfig
	if err := (Part{Env: map[string]string{}, CheckOnly: true}).LoadConfig(&good); !errors.Is(err, ErrConfigChecked) {
		t.Fatalf("CheckOnly, good configuration: %v, want ErrConfigChecked", err)
	}
	var bad PageoutConfig
	err := (Part{Env: map[string]string{"PAGEOUT_AFTER_READY": "soon"}, CheckOnly: true}).LoadConfig(&bad)
	var invalid *config.Error
	if !errors.As(err, &invalid) || errors.Is(err, ErrConfigChecked) {
		t.Fatalf("CheckOnly, bad configuration: %v, want the *config.Error alone", err)
	}
}
