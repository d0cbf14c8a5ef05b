package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// The path is everything after the inode and its padding: spaces inside it
// are the file's, " (deleted)" is the kernel's mark of an unlinked file, \012
// is a newline in the name; lines of another shape (smaps' field lines, a
// truncated line) are skipped, not misread.
func TestParseMapsOddLines(t *testing.T) {
	maps := strings.Join([]string{
		"00400000-01a00000 r-xp 00000000 fd:01 1234                               /opt/my app/bin/order",
		"01a00000-03000000 r--p 01600000 fd:01 1234                               /opt/my app/bin/order (deleted)",
		"03000000-03100000 rw-p 02c00000 fd:01 1234                               /opt/my app/bin/order",
		"03100000-03200000 rw-p 00000000 00:00 0 ",
		"c000000000-c004000000 rw-p 00000000 00:00 0",
		"7f0000000000-7f0000001000 r--p 00000000 fd:01 99                         /tmp/a\\012b",
		"7f0000001000-7f0000002000 r-xp 00000000 fd:01 98                         /opt/other/order",
		"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
		"Rss:                 120 kB",
		"7f00-7e00 r--p 00000000 fd:01 1 /x", // end before start
		"7f00-7f10 r--p 00000000",            // truncated
		"",
	}, "\n")
	got, err := parseMaps(strings.NewReader(maps))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{0x400000, 0x1a00000, "r-xp", "/opt/my app/bin/order", false},
		{0x1a00000, 0x3000000, "r--p", "/opt/my app/bin/order", true},
		{0x3000000, 0x3100000, "rw-p", "/opt/my app/bin/order", false},
		{0x3100000, 0x3200000, "rw-p", "", false},
		{0xc000000000, 0xc004000000, "rw-p", "", false},
		{0x7f0000000000, 0x7f0000001000, "r--p", "/tmp/a\nb", false},
		{0x7f0000001000, 0x7f0000002000, "r-xp", "/opt/other/order", false},
		{0x7ffd00000000, 0x7ffd00021000, "rw-p", "[stack]", false},
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %d mappings, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}

	// Only the executable's read-only private mappings, deleted or not.
	picked := executableReadOnly(got, "/opt/my app/bin/order")
	if len(picked) != 2 || picked[0].perms != "r-xp" || picked[1].perms != "r--p" || !picked[1].deleted {
		t.Errorf("picked %+v, want the r-xp and the deleted r--p mapping of the executable", picked)
	}
	if p := executableReadOnly(got, "/tmp/a\nb"); len(p) != 1 {
		t.Errorf("a path with a newline: picked %+v", p)
	}
}

func TestParseRSSFile(t *testing.T) {
	n, err := parseRSSFile("Name:\torder\nRssAnon:\t    7168 kB\nRssFile:\t   31616 kB\nRssShmem:\t       0 kB\n")
	if err != nil || n != 31616<<10 {
		t.Errorf("got %d, %v; want %d", n, err, 31616<<10)
	}
	if _, err := parseRSSFile("Name:\torder\n"); err == nil {
		t.Error("no RssFile line: want an error")
	}
}

// A service hosted beside others (cmd/shanhai) never pages out: one part
// being ready says nothing about the code the others still start with. A
// process's own service does, after the hook it already had.
func TestPageoutOnlyForAServiceAloneInItsProcess(t *testing.T) {
	called := false
	prev := func() { called = true }
	log := slog.New(slog.DiscardHandler)

	hosted := withPageout(Hosted(context.Background()), log)
	if afterReady(hosted, nil) != nil {
		t.Error("hosted: a page-out hook was added")
	}
	if afterReady(context.Background(), nil) != nil {
		t.Error("unmarked context: a page-out hook was added")
	}
	hook := afterReady(withPageout(context.Background(), log), prev)
	if hook == nil {
		t.Fatal("alone in its process: no hook")
	}
	hook()
	if !called {
		t.Error("the service's own OnReady did not run")
	}
}

// PAGEOUT_AFTER_READY is validated before anything starts, as a service's
// own variables are (a *config.Error: exit 2), and it decides whether the
// service's server pages out after its first ready answer (default: it does).
func TestRunServicePageoutSwitch(t *testing.T) {
	run := func(env map[string]string) (marked bool, err error) {
		err = Part{Env: env, Logger: slog.New(slog.DiscardHandler)}.RunService(t.Context(), Wiring{
			Name: "demo",
			New: func(context.Context, *slog.Logger, *telemetry.Provider) (Runner, error) {
				return runnerFunc(func(ctx context.Context) error {
					marked = afterReady(ctx, nil) != nil
					return nil
				}), nil
			},
		})
		return marked, err
	}
	for _, tc := range []struct {
		value       string
		set, wantOn bool
	}{{"", false, true}, {"true", true, true}, {"false", true, false}, {"0", true, false}} {
		env := map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
		if tc.set {
			env["PAGEOUT_AFTER_READY"] = tc.value
		}
		if on, err := run(env); err != nil || on != tc.wantOn {
			t.Errorf("PAGEOUT_AFTER_READY=%q (set %v): page-out %v, err %v; want %v", tc.value, tc.set, on, err, tc.wantOn)
		}
	}
	_, err := run(map[string]string{"PAGEOUT_AFTER_READY": "sometimes"})
	var bad *config.Error
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "PAGEOUT_AFTER_READY") {
		t.Errorf("PAGEOUT_AFTER_READY=sometimes: got %v, want a *config.Error naming it", err)
	}
}
