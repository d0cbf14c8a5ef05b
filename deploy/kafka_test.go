package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// kafkaStart is the script compose's and kind's Kafka start through, and imageRun the apache/kafka image's own
// command (its CMD), which the script ends by running with CLUSTER_ID set.
const (
	kafkaStart = "kafka/start.sh"
	imageRun   = "/etc/kafka/docker/run"
)

// checkKafkaStart says what is wrong with how a Kafka container of the apache/kafka image starts: argv is its command
// (compose) or args (Kubernetes: the image's entrypoint stays), env its variables, and mounted the text of the file at
// each path the container mounts one. The image formats an empty data volume with $CLUSTER_ID, or with its one
// default id when that is unset (configureDefaults: 5L6g3nShT-eMCtK--X86sw), so every emptied compose or kind Kafka
// came back as the same cluster, and the bridge's Pulsar producers, named by the Kafka cluster id, with it: Pulsar's
// deduplication then dropped the new cluster's records, whose offsets count from 0 again, as replays of the old
// ones (bridge/README.md). The start script gives each newly formatted volume an id of its own.
func checkKafkaStart(argv []string, env map[string]string, mounted map[string]string, script string) []string {
	var errs []string
	for _, name := range []string{"CLUSTER_ID", "KAFKA_CLUSTER_ID"} {
		if v, ok := env[name]; ok {
			errs = append(errs, name+"="+v+" is fixed: every volume formatted with it is the same cluster")
		}
	}
	if len(argv) < 2 || argv[len(argv)-1] != imageRun {
		runs := "the image's own command"
		if len(argv) > 0 {
			runs = strings.Join(argv, " ")
		}
		return append(errs, "runs "+runs+", not "+kafkaStart+" then the image's "+imageRun+
			": an empty volume is formatted with the image's fixed default cluster id")
	}
	path := argv[len(argv)-2]
	switch text, ok := mounted[path]; {
	case !ok:
		errs = append(errs, "runs "+path+", which it does not mount")
	case text != script:
		errs = append(errs, path+" is not "+kafkaStart)
	}
	return errs
}

// TestKafkaFormatsWithAClusterIdOfItsOwn: compose's and kind's Kafka start through kafka/start.sh (checkKafkaStart
// says why), as the file in this repository, and set no cluster id of their own.
func TestKafkaFormatsWithAClusterIdOfItsOwn(t *testing.T) {
	script, err := os.ReadFile(kafkaStart)
	if err != nil {
		t.Error(err) // and what starts Kafka is checked all the same
	}

	s, ok := loadCompose(t).Services["kafka"]
	if !ok {
		t.Fatal("compose: no kafka service: follow it here")
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = value(v)
	}
	mounted := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if b, err := os.ReadFile(v.Source); err == nil {
			mounted[v.Target] = string(b)
		}
	}
	for _, e := range checkKafkaStart(s.Command, env, mounted, string(script)) {
		t.Errorf("compose kafka: %s", e)
	}

	objs := build(t, "k8s/overlays/kind")
	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		if cm, ok := o.Value.(*corev1.ConfigMap); ok {
			configMaps[o.Namespace+"/"+o.Name] = cm.Data
		}
	}
	found := false
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok || o.Name != "kafka" {
			continue
		}
		found = true
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		if len(c.Command) > 0 {
			t.Errorf("k8s kafka: command %v replaces the image's entrypoint; give args", c.Command)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		mounted := map[string]string{}
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name != m.Name || v.ConfigMap == nil {
					continue
				}
				for key, text := range configMaps[o.Namespace+"/"+v.ConfigMap.Name] {
					if m.SubPath == "" {
						mounted[filepath.Join(m.MountPath, key)] = text
					} else if m.SubPath == key {
						mounted[m.MountPath] = text
					}
				}
			}
		}
		for _, e := range checkKafkaStart(c.Args, env, mounted, string(script)) {
			t.Errorf("k8s kafka: %s", e)
		}
	}
	if !found {
		t.Fatal("k8s: no kafka Deployment in the kind build: follow it here")
	}
}

// startKafka runs kafka/start.sh as the image would, on data directory dir, with a kafka-storage.sh whose random-uuid
// prints newID, and returns the CLUSTER_ID the image's command was given. That command is a stand-in that formats
// dir as the image's kafka-storage.sh format does when dir is empty: it writes meta.properties with the id.
func startKafka(t *testing.T, dir, newID string) (string, error) {
	t.Helper()
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	storage := "#!/bin/sh\n[ \"$1\" = random-uuid ] || exit 2\nprintf '%s\\n' \"$NEW_ID\"\n"
	if err := os.WriteFile(filepath.Join(home, "bin", "kafka-storage.sh"), []byte(storage), 0o755); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(home, "cluster-id")
	run := "#!/bin/sh\nset -e\n" +
		"[ -f \"$KAFKA_LOG_DIRS/meta.properties\" ] || printf 'node.id=1\\nversion=1\\ncluster.id=%s\\n' \"$CLUSTER_ID\" > \"$KAFKA_LOG_DIRS/meta.properties\"\n" +
		"printf '%s' \"$CLUSTER_ID\" > \"$GOT\"\n"
	if err := os.WriteFile(filepath.Join(home, "run"), []byte(run), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", kafkaStart, filepath.Join(home, "run"))
	cmd.Env = append(os.Environ(), "KAFKA_HOME="+home, "KAFKA_LOG_DIRS="+dir, "NEW_ID="+newID, "GOT="+got, "CLUSTER_ID=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, out.Bytes())
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("the image's command did not run: %v\n%s", err, out.Bytes())
	}
	return string(b), nil
}

// TestKafkaStartKeepsTheIdItsStorageWasFormattedWith: kafka/start.sh gives an empty data directory a new cluster id
// and a formatted one the id it holds, so a restarted broker stays the same cluster and an emptied one becomes a new
// one; and if no id can be made it stops rather than let the image format with its fixed default.
func TestKafkaStartKeepsTheIdItsStorageWasFormattedWith(t *testing.T) {
	const first, second = "Q1ZbXhQ5RiCsVbmrMNjD3w", "zK0T-aT_QRuMrXR2hY8nVg" // base64url UUIDs, as random-uuid prints
	dir := t.TempDir()
	if got, err := startKafka(t, dir, first); err != nil || got != first {
		t.Fatalf("empty storage: CLUSTER_ID=%q (%v), want the new id %q", got, err, first)
	}
	if got, err := startKafka(t, dir, second); err != nil || got != first {
		t.Fatalf("formatted storage: CLUSTER_ID=%q (%v), want the id it was formatted with, %q", got, err, first)
	}
	if err := os.Remove(filepath.Join(dir, "meta.properties")); err != nil {
		t.Fatal(err)
	}
	if got, err := startKafka(t, dir, second); err != nil || got != second {
		t.Fatalf("emptied storage: CLUSTER_ID=%q (%v), want a new id %q", got, err, second)
	}
	for _, bad := range []string{"", "not an id", "5L6g3nShT-eMCtK--X86sw\nmore"} {
		if got, err := startKafka(t, t.TempDir(), bad); err == nil {
			t.Errorf("random-uuid printed %q: the broker started with CLUSTER_ID=%q, want the script to stop", bad, got)
		}
	}
}

// kafkaStartWrites are the directories the apache/kafka image writes on its way to a running broker, besides
// KAFKA_LOG_DIRS: its configure script renders server.properties into /opt/kafka/config, and kafka-server-start.sh
// runs the JVM with -loggc, for which kafka-run-class.sh creates $LOG_DIR (/opt/kafka/logs unless LOG_DIR is set) and
// points -Xlog:gc* at a file there. The JVM refuses to start when it cannot open that file ("Error opening log file
// ... Could not create the Java Virtual Machine", checked with OpenJDK 17), and the image has no /opt/kafka/logs.
func kafkaStartWrites(env map[string]string) []string {
	logDir := env["LOG_DIR"]
	if logDir == "" {
		logDir = "/opt/kafka/logs"
	}
	return []string{"/opt/kafka/config", logDir, env["KAFKA_LOG_DIRS"]}
}

// TestKafkaStartsOnAReadOnlyRootFilesystem: in Kubernetes Kafka runs with a read-only root filesystem, so every
// directory its start writes must be a writable volume. /opt/kafka/logs was not: the broker's JVM could not open
// its GC log there and exited before listening, and the pod restarted until its backoff gave up on it.
func TestKafkaStartsOnAReadOnlyRootFilesystem(t *testing.T) {
	for _, o := range build(t, "k8s/overlays/kind") {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok || o.Name != "kafka" {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			return // a writable root holds them all (TestKustomizeBuildsAndPassesPolicy wants it read-only)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, dir := range kafkaStartWrites(env) {
			writable := false
			for _, m := range c.VolumeMounts {
				if !m.ReadOnly && (dir == m.MountPath || strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/")) {
					writable = true
				}
			}
			if dir == "" || !writable {
				t.Errorf("kafka: %q is written while the broker starts, and no writable volume holds it (the root filesystem is read-only)", dir)
			}
		}
		return
	}
	t.Fatal("kind overlay: no kafka Deployment")
}
