package deploy

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// storeData names, for each in-cluster store whose data the platform relies on after a restart, the directory its
// data lives in. Redis (limits) and etcd (discovery, which the binaries write again at start, and dynamic
// overrides, which fall back to the configured values) are left out.
var storeData = map[string]string{
	"kafka":    "/var/lib/kafka/data",             // KAFKA_LOG_DIRS, checked against the Deployment's variable below
	"pulsar":   "/pulsar/data",                    // bin/pulsar standalone's default, under the image's /pulsar
	"nats":     "/data",                           // JetStream's store_dir (nats.conf)
	"postgres": "/var/lib/postgresql/data/pgdata", // PGDATA
}

// TestStoresKeepTheirDataOnPersistentVolumes: in every build that runs the brokers and the database in the cluster,
// each keeps its data on a PersistentVolumeClaim the build creates, and rolls out by Recreate (two servers must never
// share a data directory). On an emptyDir each lost its data whenever its pod was replaced (a changed manifest applied
// again, kubectl rollout restart, an eviction), and independently of the others: the bridge's Pulsar producers, whose
// sequence ids are Kafka offsets, then had every new record dropped as a replay until Kafka's offsets passed the old
// ones (bridge/README.md: nothing detects it), as under compose before 7693528; JetStream lost the events the bridge
// had taken from Kafka and not yet archived; PostgreSQL lost every account and order.
func TestStoresKeepTheirDataOnPersistentVolumes(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			claims := map[string]bool{}
			for _, o := range objs {
				if _, ok := o.Value.(*corev1.PersistentVolumeClaim); ok {
					claims[o.Namespace+"/"+o.Name] = true
				}
			}
			found := 0
			for _, o := range objs {
				d, ok := o.Value.(*appsv1.Deployment)
				path, store := storeData[o.Name]
				if !ok || !store {
					continue
				}
				found++
				spec := d.Spec.Template.Spec
				c := spec.Containers[0]
				for _, e := range c.Env {
					if e.Name == "KAFKA_LOG_DIRS" && e.Value != path {
						t.Errorf("%s: KAFKA_LOG_DIRS=%s, the test checks %s: follow it here", o.Name, e.Value, path)
					}
				}
				if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("%s: strategy %q, want Recreate: a rolling update starts a second server on the same data",
						o.Name, d.Spec.Strategy.Type)
				}
				volume := ""
				for _, m := range c.VolumeMounts {
					if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
						volume = m.Name
					}
				}
				if volume == "" {
					t.Errorf("%s: nothing is mounted at its data directory %s", o.Name, path)
					continue
				}
				for _, v := range spec.Volumes {
					if v.Name != volume {
						continue
					}
					switch {
					case v.PersistentVolumeClaim == nil:
						t.Errorf("%s: its data (%s) is on volume %s, not a PersistentVolumeClaim: lost when the pod is replaced",
							o.Name, path, volume)
					case !claims[o.Namespace+"/"+v.PersistentVolumeClaim.ClaimName]:
						t.Errorf("%s: claim %s is not in the build", o.Name, v.PersistentVolumeClaim.ClaimName)
					}
				}
			}
			if found != 0 && found != len(storeData) {
				t.Errorf("%d of the %d stores found: follow the others here", found, len(storeData))
			}
		})
	}
}
