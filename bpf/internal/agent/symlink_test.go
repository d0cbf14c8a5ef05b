package agent

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A target named by a symlink (/usr/local/bin/x -> /opt/x/v1/x) must follow the link as it is now: created after the
// agent started (a DaemonSet up before the service is installed) or flipped to a new release (ln -sfn). The path was
// resolved once, at start, and compared as a string with /proc/N/exe, so such a target's processes were never found
// (found by review). Each case starts a process through the link as it ends up and wants it found and counted.
func TestSymlinkTargetFollowsTheLink(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := buildTarget(t, false)
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1"), filepath.Join(dir, "v2")
	copyInPlace(t, bin, v1)
	copyInPlace(t, bin, v2)
	for _, c := range []struct{ name, before, after string }{
		{"created later", "", v1},
		{"flipped v1 to v2", v1, v2},
	} {
		t.Run(c.name, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "svc")
			if c.before != "" {
				if err := os.Symlink(c.before, link); err != nil {
					t.Fatal(err)
				}
			}
			a := newAgent(t, link)
			a.Scan()
			os.Remove(link)
			if err := os.Symlink(c.after, link); err != nil {
				t.Fatal(err)
			}
			tg := startTarget(t, link)
			a.Scan()
			if ts := a.Targets(); len(ts) != 1 || ts[0].PID != tg.pid || len(ts[0].Probes) == 0 {
				t.Fatalf("%s -> %s: targets = %+v, want pid %d probed", link, c.after, ts, tg.pid)
			}
			client := &http.Client{Timeout: 5 * time.Second}
			for range 5 {
				tg.get(t, client, "GET", "/work?status=201")
			}
			eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 5) })
		})
	}
}
