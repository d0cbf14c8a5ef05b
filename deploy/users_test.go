package deploy

import (
	"bufio"
	"cmp"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
)

// usersTableHeader opens the table of deploy/README.md that says which user each container runs as.
const usersTableHeader = "| container | compose | Kubernetes | why |"

// readmeUsers reads that table: for each container its uid in compose and in Kubernetes, -1 where it does not run.
func readmeUsers(t *testing.T) (compose, kube map[string]int) {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uid := func(cell string) int {
		cell = strings.Trim(strings.TrimSpace(cell), "`")
		if cell == "-" {
			return -1
		}
		digits, _, _ := strings.Cut(cell, " ")
		n, err := strconv.Atoi(strings.Trim(digits, "`"))
		if err != nil || n < 0 {
			t.Fatalf("README.md users table: %q is not a uid or -", cell)
		}
		return n
	}
	compose, kube = map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !in {
			in = line == usersTableHeader
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		c, k := uid(cells[1]), uid(cells[2])
		for _, name := range strings.Split(cells[0], ",") {
			name = strings.Trim(strings.TrimSpace(name), "`")
			if _, dup := compose[name]; dup {
				t.Errorf("README.md users table names %s twice", name)
			}
			compose[name], kube[name] = c, k
		}
	}
	if len(compose) == 0 {
		t.Fatalf("README.md has no table opening %q that says which user each container runs as", usersTableHeader)
	}
	return compose, kube
}

// TestREADMESaysWhichUserEachContainerRunsAs: deploy/README.md's table of users is what the manifests run, and its
// prose does not claim that the eBPF agent is the only root container unless it is. It said so while compose ran
// etcd and NATS as root (their images name no user) and started PostgreSQL and Redis as root (their entrypoints
// step down after changing ownership). Each compose service names its user, so the test reads it instead of an
// image's USER, which nothing here can see; each Kubernetes container has a runAsUser of its own or its pod's.
func TestREADMESaysWhichUserEachContainerRunsAs(t *testing.T) {
	wantCompose, wantKube := readmeUsers(t)

	p := loadCompose(t, "load")
	var composeRoot []string
	for name, s := range p.Services {
		want, listed := wantCompose[name]
		uidText, _, _ := strings.Cut(s.User, ":")
		got, err := strconv.Atoi(uidText)
		switch {
		case s.User == "":
			t.Errorf("compose %s names no user: its image's USER decides, which no test here can read (give it user: uid or uid:gid)", name)
			continue
		case err != nil:
			t.Errorf("compose %s: user %q is not numeric: which uid a name is depends on the image", name, s.User)
			continue
		case !listed || want < 0:
			t.Errorf("compose %s runs as uid %d, and README.md's users table does not say so", name, got)
		case got != want:
			t.Errorf("compose %s runs as uid %d, README.md's users table says %d", name, got, want)
		}
		if got == 0 {
			composeRoot = append(composeRoot, name)
		}
	}
	for name, want := range wantCompose {
		if _, ok := p.Services[name]; !ok && want >= 0 {
			t.Errorf("README.md's users table gives compose service %s, which compose.yaml does not have", name)
		}
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(composeRoot)
	prose := strings.Join(strings.Fields(string(readme)), " ") // a sentence may wrap anywhere
	if strings.Contains(prose, "only container running as root") && !slices.Equal(composeRoot, []string{privileged}) {
		t.Errorf("README.md says the eBPF agent is the only container running as root; in compose %v are", composeRoot)
	}

	seen := map[string]bool{}
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			spec := podSpec(o)
			if spec == nil {
				continue
			}
			// The Job's name carries a version (pulsar-init-2); its app.kubernetes.io/name label does not.
			name := o.Name
			if n := appName(o); n != "" {
				name = n
			}
			seen[name] = true
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				var uid *int64
				if spec.SecurityContext != nil {
					uid = spec.SecurityContext.RunAsUser
				}
				if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
					uid = c.SecurityContext.RunAsUser
				}
				want, listed := wantKube[name]
				switch {
				case uid == nil:
					t.Errorf("%s: %s %s container %s sets no runAsUser: its image's USER decides, which no test here can read", dir, o.Kind, name, c.Name)
				case !listed || want < 0:
					t.Errorf("%s: %s %s runs as uid %d, and README.md's users table does not say so", dir, o.Kind, name, *uid)
				case int(*uid) != want:
					t.Errorf("%s: %s %s runs as uid %d, README.md's users table says %d", dir, o.Kind, name, *uid, want)
				}
			}
		}
	}
	for name, want := range wantKube {
		if !seen[name] && want >= 0 {
			t.Errorf("README.md's users table gives Kubernetes workload %s, which no build has", name)
		}
	}
}

// appName is the app.kubernetes.io/name label of a workload's pod template, or "".
func appName(o object) string {
	switch v := o.Value.(type) {
	case *appsv1.Deployment:
		return v.Spec.Template.Labels["app.kubernetes.io/name"]
	case *appsv1.DaemonSet:
		return v.Spec.Template.Labels["app.kubernetes.io/name"]
	case *batchv1.Job:
		return v.Spec.Template.Labels["app.kubernetes.io/name"]
	}
	return ""
}

// TestNothingRunsAsRootButTheEBPFAgent: least privilege, in compose as in Kubernetes, infrastructure included. The
// eBPF agent alone runs as root, which loading BPF programs and probing other users' processes needs (README.md
// says why). Compose ran etcd and NATS as root because their named volumes were root's.
func TestNothingRunsAsRootButTheEBPFAgent(t *testing.T) {
	p := loadCompose(t, "load")
	for name, s := range p.Services {
		uid, _, _ := strings.Cut(s.User, ":")
		if name != privileged && (uid == "0" || uid == "root") {
			t.Errorf("compose %s runs as root", name)
		}
	}
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			spec := podSpec(o)
			if spec == nil || o.Name == privileged {
				continue
			}
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				uid := (*int64)(nil)
				if spec.SecurityContext != nil {
					uid = spec.SecurityContext.RunAsUser
				}
				if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
					uid = c.SecurityContext.RunAsUser
				}
				if uid != nil && *uid == 0 {
					t.Errorf("%s: %s %s container %s runs as root", dir, o.Kind, o.Name, c.Name)
				}
			}
		}
	}
}

// imageDirs are directories images give a non-root user, which a named volume mounted on one takes on its first
// use (Docker copies an image directory's owner and mode to the empty volume mounted on it): image repository, then
// directory, then owner uid. The etcd image is distroless (static-debian), whose nonroot user has its home.
var imageDirs = map[string]map[string]int{
	"quay.io/coreos/etcd": {"/home/nonroot": 65532},
}

// composeDockerfile is the Dockerfile a compose build reads: its dockerfile (Dockerfile by default), relative to its
// context, which compose-go has made absolute from the compose file's directory.
func composeDockerfile(b *types.BuildConfig) string {
	dockerfile := cmp.Or(b.Dockerfile, "Dockerfile")
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(b.Context, dockerfile)
	}
	return dockerfile
}

// builtDirs reads the directories a compose build's Dockerfile makes a user's with `install -d -o <uid> ... <dir>`.
func builtDirs(t *testing.T, dockerfile string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^RUN install -d -o (\d+) .* (/\S*)$`).FindAllStringSubmatch(string(b), -1) {
		uid, _ := strconv.Atoi(m[1])
		dirs[m[2]] = uid
	}
	return dirs
}

// TestComposeStateVolumesAreTheirUsers: etcd's and NATS's named volumes are mounted on a directory their image gives
// the user they run as, so Docker makes a new volume that user's and neither server needs root to write its data.
// Mounted where the image has no such directory (etcd's /etcd-data, NATS's /data in the official image), the volume
// was root's, and both ran as root for it. The other servers' images own their data directories themselves.
func TestComposeStateVolumesAreTheirUsers(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"etcd", "nats"} {
		s := p.Services[name]
		dirs := imageDirs[strings.Split(s.Image, ":")[0]]
		if s.Build != nil {
			dirs = builtDirs(t, composeDockerfile(s.Build))
		}
		uid, _ := strconv.Atoi(strings.Split(s.User, ":")[0])
		mounted := 0
		for _, v := range s.Volumes {
			if v.Type != "volume" {
				continue
			}
			mounted++
			owner, ok := dirs[v.Target]
			switch {
			case !ok:
				t.Errorf("compose %s: volume %s is mounted on %s, which its image does not give a user: a new volume is root's", name, v.Source, v.Target)
			case owner != uid:
				t.Errorf("compose %s runs as uid %d; its volume %s is mounted on %s, uid %d's in its image", name, uid, v.Source, v.Target, owner)
			}
		}
		if mounted == 0 {
			t.Errorf("compose %s keeps its data on no named volume", name)
		}
	}
}
