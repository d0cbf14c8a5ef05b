package deploy

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileRules reads deploy/Dockerfile for the rules the images promise: multi-stage, cross-compiled for any
// target platform, static, trimmed and stripped, and run as a non-root user on a distroless base.
func TestDockerfileRules(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	froms := regexp.MustCompile(`(?m)^FROM\s+(.+)$`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found %d FROM lines", len(froms))
	}
	if !strings.Contains(froms[0][1], "--platform=$BUILDPLATFORM") {
		t.Error("build stage should run on $BUILDPLATFORM and cross-compile (multi-arch without emulation)")
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %q is not distroless/static or scratch", final)
	}
	if err := pinned(strings.Fields(final)[0]); err != nil && final != "scratch" {
		t.Error(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "ARG TARGETARCH"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 {
		t.Fatal("no USER: the image would run as root")
	}
	if u := users[len(users)-1][1]; u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
		t.Errorf("final USER %s is root", u)
	}
}

// buildLikeDockerfile is the Dockerfile's build command, so the test builds what the image would contain.
var buildLikeDockerfile = []string{"build", "-trimpath", "-tags", "nosqlite,nomsgpack", "-ldflags=-s -w"}

// TestBinariesBuildStaticAsInTheImage builds every binary the way the Dockerfile does and reports its size. One go
// build for all of them: shared dependencies compile once.
//
// The build is most of this package's test time and runs in a child process, so it is started before t.Parallel,
// which holds the test until the package's sequential tests are done: it builds while they run (this process mostly
// uses one core for them, the build the other), and the test waits for it afterwards.
func TestBinariesBuildStaticAsInTheImage(t *testing.T) {
	out := t.TempDir()
	bins := append(Binaries, Binary{Name: "healthprobe", Package: "deploy/cmd/healthprobe"})
	args := append(append([]string{}, buildLikeDockerfile...), "-o", out+string(filepath.Separator))
	for _, b := range bins {
		args = append(args, "./"+b.Package)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Start(); err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	t.Parallel()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg.Bytes())
	}
	for _, b := range bins {
		// go build -o dir/ names each binary after its package directory.
		bin := filepath.Join(out, filepath.Base(b.Package))
		f, err := elf.Open(bin)
		if err != nil {
			t.Errorf("%s: %v", b.Name, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: distroless/static has no loader", b.Name)
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s still has a symbol table: -s did not apply", b.Name)
		}
		f.Close()
		st, _ := os.Stat(bin)
		t.Logf("%-12s %5.1f MB", b.Name, float64(st.Size())/1e6)
	}
}
