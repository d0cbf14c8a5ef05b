package deploy

import (
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeInfrastructureIsHardened: every compose container but the eBPF agent (agent_test.go) runs as deploy/k8s
// runs it, as a non-root user with every capability dropped, no privilege escalation and a read-only root. The
// platform's own were (TestComposeHardening); the infrastructure's ran with Docker's default capabilities (CHOWN,
// DAC_OVERRIDE, SETUID, ...) and a writable root, which Kubernetes gives none of them.
func TestComposeInfrastructureIsHardened(t *testing.T) {
	p := loadCompose(t, "load")
	for name, s := range p.Services {
		if name == privileged {
			continue
		}
		uid, _, _ := strings.Cut(s.User, ":")
		if uid == "" || uid == "0" || uid == "root" {
			t.Errorf("compose %s: runs as user %q, want a non-root uid", name, s.User)
		}
		if !s.ReadOnly {
			t.Errorf("compose %s: root filesystem must be read-only (read_only: true, and a tmpfs where it writes)", name)
		}
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 || s.Privileged {
			t.Errorf("compose %s: must drop ALL capabilities and add none", name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("compose %s: must set no-new-privileges", name)
		}
		for _, fs := range s.Tmpfs {
			target, opts, _ := strings.Cut(fs, ":")
			// Docker makes a tmpfs root's, and its own user could not write it unless it is world-writable.
			if !slices.Contains(strings.Split(opts, ","), "mode=1777") {
				t.Errorf("compose %s: tmpfs %s has no mode=1777: its non-root user cannot write it", name, target)
			}
			if target == "/tmp" && jvmImage(s.Image) && !slices.Contains(strings.Split(opts, ","), "exec") {
				t.Errorf("compose %s: /tmp is noexec (Docker's default): the JVM cannot load the native libraries it unpacks there", name)
			}
		}
	}
}

// jvmImage reports whether image runs a JVM that unpacks native libraries into /tmp.
func jvmImage(image string) bool {
	return strings.HasPrefix(image, "apache/kafka:") || strings.HasPrefix(image, "apachepulsar/pulsar:")
}

// TestComposeWritesWhereKubernetesDoes: each directory a Kubernetes infrastructure container has a writable volume on
// (its data, or scratch an emptyDir gives it: what the image writes on its way to serving, found in kind with a
// read-only root) is writable in the compose container of the same name too, a volume or a tmpfs: on compose's
// read-only root the image would fail there as it did in Kubernetes (kafka_test.go). A directory Kubernetes names by
// a flag (etcd's --data-dir) is the one the compose command gives the same flag.
func TestComposeWritesWhereKubernetesDoes(t *testing.T) {
	p := loadCompose(t, "load")
	seen := 0
	for _, o := range build(t, "k8s/overlays/kind") {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, c := range spec.Containers {
			s, ok := p.Services[c.Name]
			if !ok || s.Build != nil || c.Name == privileged { // the platform's images: TestImageUsersRunOnAReadOnlyRoot
				continue
			}
			seen++
			args := append(append([]string{}, c.Command...), c.Args...)
			for _, m := range c.VolumeMounts {
				if m.ReadOnly {
					continue
				}
				dir := composeDir(m.MountPath, args, s.Command)
				if !composeWritable(s, dir) {
					t.Errorf("compose %s: %s is writable in Kubernetes (volume %s) and not in compose: "+
						"give it a volume or a tmpfs", c.Name, dir, m.Name)
				}
			}
		}
	}
	if seen < 8 {
		t.Fatalf("compared %d infrastructure containers with compose's, want all of them (postgres, redis, kafka, ...)", seen)
	}
}

// composeDir is where compose's command puts what Kubernetes mounts at dir: the value of the flag whose value is
// dir in args, when the compose command gives that flag; else dir itself.
func composeDir(dir string, args []string, command types.ShellCommand) string {
	for _, a := range args {
		flag, value, ok := strings.Cut(a, "=")
		if !ok || path.Clean(value) != path.Clean(dir) {
			continue
		}
		for _, ca := range command {
			if v, ok := strings.CutPrefix(ca, flag+"="); ok {
				return path.Clean(v)
			}
		}
	}
	return path.Clean(dir)
}

// composeWritable reports whether dir is on a writable volume or a tmpfs of s.
func composeWritable(s types.ServiceConfig, dir string) bool {
	under := func(mount string) bool {
		mount = path.Clean(mount)
		return dir == mount || strings.HasPrefix(dir, strings.TrimSuffix(mount, "/")+"/")
	}
	for _, fs := range s.Tmpfs {
		if target, _, _ := strings.Cut(fs, ":"); under(target) {
			return true
		}
	}
	for _, v := range s.Volumes {
		if !v.ReadOnly && under(v.Target) {
			return true
		}
	}
	return false
}

// TestComposePulsarGCLogIsBounded: compose's Pulsar writes its GC log where its command puts the logs
// (PULSAR_LOG_DIR), on the /tmp tmpfs, and a tmpfs is charged to the container's memory limit. The image's
// default rotation (conf/pulsar_env.sh, used when PULSAR_GC_LOG is unset) keeps 10 files of 20 MB: 200 MB beside
// a 512 MB heap and 256 MB of direct memory under a 1 GiB limit. Kafka's log tmpfs is bounded to 32 MiB; so is
// this log, counting the file being written beside the rotated ones.
func TestComposePulsarGCLogIsBounded(t *testing.T) {
	s := loadCompose(t).Services["pulsar"]
	gcLog := value(s.Environment["PULSAR_GC_LOG"])
	if gcLog == "" {
		t.Fatal("compose pulsar: no PULSAR_GC_LOG: the image's default keeps 10 GC logs of 20 MB on the /tmp tmpfs")
	}
	opt := regexp.MustCompile(`-Xlog:gc[^: ]*:([^: ]+):[^ ]*filecount=(\d+),filesize=(\d+)M\b`).FindStringSubmatch(gcLog)
	if opt == nil {
		t.Fatalf("compose pulsar: PULSAR_GC_LOG %q names no GC log file with filecount and filesize in MB", gcLog)
	}
	files, _ := strconv.Atoi(opt[2])
	mb, _ := strconv.Atoi(opt[3])
	if total := (files + 1) * mb; total > 32 {
		t.Errorf("compose pulsar: the GC log may hold %d MB (%d rotated files and the current one of %d MB), want at most 32", total, files, mb)
	}
	logDir := regexp.MustCompile(`PULSAR_LOG_DIR=(\S+)`).FindStringSubmatch(strings.Join(s.Command, " "))
	if logDir == nil || path.Dir(opt[1]) != logDir[1] {
		t.Errorf("compose pulsar: the GC log %s is not in the command's PULSAR_LOG_DIR %v, the directory its start makes", opt[1], logDir)
	}
	if !composeWritable(s, path.Dir(opt[1])) {
		t.Errorf("compose pulsar: the GC log's directory %s is on the read-only root", path.Dir(opt[1]))
	}
}
