package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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
	if got := (Part{Logger: given}).Log(&bytes.Buffer{}, "debug"); got != given {
		t.Error("a given logger was replaced")
	}
	if slog.Default() != before {
		t.Error("a hosted part changed slog's default")
	}

	var out bytes.Buffer
	log := (Part{}).Log(&out, "warn")
	log.Info("dropped")
	log.Warn("kept")
	if slog.Default() != log {
		t.Error("a binary's logger did not become slog's default")
	}
	if s := out.String(); strings.Contains(s, "dropped") || !strings.Contains(s, `"msg":"kept"`) {
		t.Errorf("want JSON at LOG_LEVEL warn, got %q", s)
	}
}
