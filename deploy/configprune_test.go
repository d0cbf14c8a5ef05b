package deploy

import (
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// contentNamed is the label every ConfigMap kustomize names by its content carries, and nothing else: kind-up.sh
// prunes by it.
const contentNamed = "shanhai.dev/content-named"

// TestContentNamedConfigMapsAreLabelledForPruning: each ConfigMap named by its content (configrollout_test.go) is a
// new object on every change, and `kubectl apply` leaves the one it replaced, which piled up in the cluster until
// kind-down.sh. kind-up.sh deletes the ones the overlay no longer holds with `apply --prune -l` on this label, so
// every such ConfigMap must carry it, and nothing else may: an object with the label that the overlay stops holding
// would be deleted with them.
func TestContentNamedConfigMapsAreLabelledForPruning(t *testing.T) {
	_, hashed := generators(t, inMemory(t))
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			m, ok := o.Value.(metav1.Object)
			if !ok {
				t.Fatalf("%s: %s %s has no object metadata", dir, o.Kind, o.Name)
			}
			labels := m.GetLabels()
			generated := o.Kind == "ConfigMap" && namedByContent(o.Name, hashed)
			if generated && labels[contentNamed] != "true" {
				t.Errorf("%s: ConfigMap %s/%s is named by its content but has no %s=true label", dir, o.Namespace, o.Name, contentNamed)
			}
			if _, ok := labels[contentNamed]; ok && !generated {
				t.Errorf("%s: %s %s/%s has the %s label, which kind-up.sh prunes by, and is no content-named ConfigMap",
					dir, o.Kind, o.Namespace, o.Name, contentNamed)
			}
		}
	}
}

// TestKindUpPrunesReplacedConfigMaps: once every rollout is done, kind-up.sh applies the overlay again with
// `--prune -l` on the label, which deletes the labelled ConfigMaps the overlay no longer holds in the namespaces it
// applies to. After the rollouts, so that no pod still starting needs one.
func TestKindUpPrunesReplacedConfigMaps(t *testing.T) {
	b := kindUpCalls(t)
	calls := strings.Split(strings.TrimSpace(b), "\n")
	prune := regexp.MustCompile(`(^| )apply -k deploy/k8s/overlays/kind --prune -l ` + regexp.QuoteMeta(contentNamed+"=true") + `$`)
	pruned, lastWait := -1, -1
	for i, c := range calls {
		if prune.MatchString(c) {
			pruned = i
		}
		if strings.Contains(c, " wait ") || strings.Contains(c, " rollout status ") {
			lastWait = i
		}
	}
	switch {
	case pruned < 0:
		t.Errorf("kind-up.sh never runs `kubectl apply -k deploy/k8s/overlays/kind --prune -l %s=true`; calls:\n%s", contentNamed, b)
	case pruned < lastWait:
		t.Errorf("kind-up.sh prunes before its last rollout wait (call %d of %d)", pruned+1, lastWait+1)
	}
}
