package deploy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// natsSize reads a size as nats-server's configuration parser does (conf/parse.go, 2.14): a bare number is bytes,
// k, m, g and t are powers of 1000, and kb, mb, gb and tb (or ki, mi, gi, ti) powers of 1024, in any case.
func natsSize(t *testing.T, s string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)([A-Za-z]*)$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		t.Fatalf("nats size %q: not a number with a unit", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := strings.ToLower(m[2])
	exp := strings.Index("kmgt", unit[:min(len(unit), 1)]) + 1
	if unit == "" {
		return n
	}
	if exp == 0 || len(unit) > 3 {
		t.Fatalf("nats size %q: unit %q is not one nats-server reads", s, m[2])
	}
	base := int64(1000)
	if len(unit) > 1 {
		base = 1024
	}
	for range exp {
		n *= base
	}
	return n
}

// pulsarSize reads pulsar-admin's --size (k, m, g, t: powers of 1024; no unit: bytes).
func pulsarSize(t *testing.T, s string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)([kKmMgGtT]?)$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("pulsar-admin size %q: not a number with k, m, g or t", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	for range strings.Index("kmgt", strings.ToLower(m[2])) + 1 {
		n *= 1024
	}
	return n
}

// TestStoresStopWithinTheirVolumes: a broker's own cap on what it keeps must leave room on its claim, or the disk
// fills before the cap acts, and each takes a full disk far worse than its cap: nats-server meets "no space left" by
// shutting JetStream down (server/jetstream.go handleOutOfSpace, 2.14), every stream with it, until it is restarted,
// where its max_file_store refuses a publish, which the bridge retries; a bookie turns read-only when its disk is
// full (diskUsageThreshold, 0.99 in standalone.conf), and Pulsar then refuses every write, where retention deletes
// old ledgers.
//
// JetStream's 2 GiB cap filled its 2Gi claim exactly, more than the file system gives a non-root process once it has
// kept its own metadata and reserved blocks; Pulsar's retention of 10G was over twice its 4Gi claim. On kind's
// local-path volumes no size is enforced, but on a StorageClass that enforces the request a full disk stops the saga.
// JetStream may use 85 % of its claim; Pulsar's retention half of its, since a ledger is deleted only whole, after
// it rolls over (every 4 hours or 2 GiB by default), and the bookie's journal and entry-log compaction need room
// beside what is retained.
func TestStoresStopWithinTheirVolumes(t *testing.T) {
	objs := build(t, "k8s/overlays/kind")
	claims := map[string]int64{}
	var retention []string
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.PersistentVolumeClaim:
			q := v.Spec.Resources.Requests[corev1.ResourceStorage]
			claims[o.Name] = q.Value()
		case *batchv1.Job:
			if v.Labels["app.kubernetes.io/name"] == "pulsar-init" {
				retention = append(retention, v.Spec.Template.Spec.Containers[0].Command...)
			}
		}
	}

	conf, err := os.ReadFile("k8s/components/infra/resources/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*max_file_store\s*:\s*(\S+)`).FindSubmatch(conf)
	if m == nil {
		t.Fatal("nats.conf sets no max_file_store: JetStream would take the whole volume")
	}
	capBytes, claim := natsSize(t, string(m[1])), claims["nats-data"]
	if claim == 0 {
		t.Fatal("no nats-data claim in the kind build")
	}
	if capBytes*100 > claim*85 {
		t.Errorf("JetStream's max_file_store %s (%d bytes) is over 85 %% of its %d-byte claim: the disk fills first, and JetStream shuts down",
			m[1], capBytes, claim)
	}

	s := regexp.MustCompile(`set-retention\s+\S+\s+(?:--time\s+\S+\s+)?--size\s+(\S+)`).FindStringSubmatch(strings.Join(retention, " "))
	if s == nil {
		t.Fatal("pulsar-init sets no retention size: the archive would grow until the volume is full")
	}
	size, claim := pulsarSize(t, s[1]), claims["pulsar-data"]
	if claim == 0 {
		t.Fatal("no pulsar-data claim in the kind build")
	}
	if size*2 > claim {
		t.Errorf("Pulsar's retention --size %s (%d bytes) is over half its %d-byte claim: the bookie's disk fills before retention deletes anything",
			s[1], size, claim)
	}
}
