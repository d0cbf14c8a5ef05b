package deploy

import (
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// workload is a platform binary as Kubernetes runs it.
type workload struct {
	namespace string
	spec      *corev1.PodSpec
}

// k8sWorkloads maps each platform image name (shanhai/<name>) in a build to its workload, with the ConfigMaps
// of the build (by namespace/name) so envFrom can be resolved.
func k8sWorkloads(t *testing.T, objs []object) (map[string]workload, map[string]map[string]string) {
	t.Helper()
	pods := map[string]workload{}
	cms := map[string]map[string]string{}
	for _, o := range objs {
		if cm, ok := o.Value.(*corev1.ConfigMap); ok {
			cms[o.Namespace+"/"+o.Name] = cm.Data
		}
		switch o.Value.(type) {
		case *appsv1.Deployment, *appsv1.DaemonSet:
		default:
			continue
		}
		spec := podSpec(o)
		for _, c := range spec.Containers {
			repo, _, _ := strings.Cut(c.Image, ":")
			if name, ok := strings.CutPrefix(repo, "shanhai/"); ok {
				if name != o.Name {
					t.Errorf("%s %s runs image %s: workload and image names should match", o.Kind, o.Name, c.Image)
				}
				pods[name] = workload{namespace: o.Namespace, spec: spec}
			}
		}
	}
	return pods, cms
}

// TestComposeAndKubernetesDescribeTheSamePlatform: the same binaries, each with every required variable set.
func TestComposeAndKubernetesDescribeTheSamePlatform(t *testing.T) {
	compose := loadCompose(t)
	var composeNames []string
	for name, s := range compose.Services {
		if s.Build != nil && s.Build.Args["BINARY"] != nil {
			composeNames = append(composeNames, name)
		}
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			pods, cms := k8sWorkloads(t, build(t, dir))
			var k8sNames []string
			for name := range pods {
				k8sNames = append(k8sNames, name)
			}
			var want []string
			for _, b := range Binaries {
				want = append(want, b.Name)
			}
			sort.Strings(want)
			sort.Strings(k8sNames)
			sort.Strings(composeNames)
			if strings.Join(k8sNames, ",") != strings.Join(want, ",") {
				t.Errorf("kubernetes runs %v; the platform is %v", k8sNames, want)
			}
			if strings.Join(composeNames, ",") != strings.Join(want, ",") {
				t.Errorf("compose builds %v; the platform is %v", composeNames, want)
			}
			for _, b := range Binaries {
				w, ok := pods[b.Name]
				if !ok {
					continue
				}
				c := w.spec.Containers[0]
				has := func(v string) bool {
					for _, e := range c.Env {
						if e.Name == v && (e.Value != "" || e.ValueFrom != nil) {
							return true
						}
					}
					for _, from := range c.EnvFrom {
						if from.ConfigMapRef != nil && cms[w.namespace+"/"+from.ConfigMapRef.Name][v] != "" {
							return true
						}
					}
					return false
				}
				if missing := missingRequired(t, b, has); len(missing) > 0 {
					t.Errorf("%s: required configuration not set in Kubernetes: %v", b.Name, missing)
				}
				port := false
				for _, p := range c.Ports {
					port = port || int(p.ContainerPort) == b.Port
				}
				if !port {
					t.Errorf("%s: container does not expose its HTTP port %d", b.Name, b.Port)
				}
			}
		})
	}
}
