package deploy

import (
	"slices"
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
// applies to. After the rollouts, so that no pod still starting needs one. And ConfigMaps only: without
// --prune-allowlist kubectl prunes its default list of kinds (Secrets, Services, PVCs, Deployments, Namespaces...),
// so the label alone would stand between a stray labelled object, a Secret kind-up.sh applied say, and its deletion.
func TestKindUpPrunesReplacedConfigMaps(t *testing.T) {
	b := kindUpCalls(t)
	calls := strings.Split(strings.TrimSpace(b), "\n")
	pruned, lastWait := -1, -1
	for i, c := range calls {
		args := strings.Fields(c)
		if slices.Contains(args, "--prune") {
			pruned = i
			for _, e := range checkPrune(args) {
				t.Errorf("kind-up.sh prunes with %q: %s", c, e)
			}
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

// checkPrune says what is wrong with the arguments of a kubectl call that prunes: it must apply the kind overlay,
// select the content-named label, and allow ConfigMaps alone to be pruned.
func checkPrune(args []string) []string {
	var errs []string
	value := func(flag string) []string {
		var vs []string
		for i, a := range args {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				vs = append(vs, v)
			} else if a == flag && i+1 < len(args) {
				vs = append(vs, args[i+1])
			}
		}
		return vs
	}
	if !slices.Contains(args, "apply") || !slices.Equal(value("-k"), []string{"deploy/k8s/overlays/kind"}) {
		errs = append(errs, "not `apply -k deploy/k8s/overlays/kind`")
	}
	if !slices.Equal(value("-l"), []string{contentNamed + "=true"}) {
		errs = append(errs, "want -l "+contentNamed+"=true")
	}
	if !slices.Equal(value("--prune-allowlist"), []string{"core/v1/ConfigMap"}) {
		errs = append(errs, "want --prune-allowlist=core/v1/ConfigMap alone: kubectl's default list prunes Secrets, Services, PVCs...")
	}
	return errs
}
