package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestAConfigChangeRollsThePodsThatReadIt: a change to a file a ConfigMap is generated from changes the pod template
// of every workload that reads that ConfigMap, so `kubectl apply -k` (scripts/kind-up.sh run again after a pull)
// replaces those pods. The infrastructure's generators had disableNameSuffixHash: the ConfigMap changed in place and
// nothing else did, so Prometheus kept evaluating the alert rules and scraping the targets it had read at start (it
// reads its files only then, and nothing here tells it to reload), the Collector kept its pipeline and NATS its
// configuration, until someone deleted their pods. Named by their content, the ConfigMaps are new objects on each
// change, and the pod templates naming them change with them. So no Job reads one (generated from a file or from
// literals, as platform-env is): its template is immutable, and apply would refuse the new name.
func TestAConfigChangeRollsThePodsThatReadIt(t *testing.T) {
	// kustomize reads the trees the builds span from memory, so each generator file can be changed without touching
	// the checkout.
	mem := inMemory(t)
	files, hashed := generators(t, mem)
	if len(files) == 0 {
		t.Fatal("no ConfigMap generated from a file: the kustomizations moved, follow them here")
	}
	const marker = "# changed by TestAConfigChangeRollsThePodsThatReadIt"
	for _, dir := range kustomizations {
		before := builtObjects(t, mem, path.Join("/deploy", dir))
		for _, o := range before {
			if spec := podSpec(o.obj); spec != nil {
				for _, name := range configMapsRead(spec) {
					if _, ok := before["ConfigMap/"+o.obj.Namespace+"/"+name]; !ok {
						t.Errorf("%s: %s %s reads ConfigMap %s, which the build does not hold", dir, o.obj.Kind, o.obj.Name, name)
					}
					// A Job's pod template cannot change once it is created: a changed file or literal renames the
					// ConfigMap, apply refuses the Job's new template, and kind-up.sh run again stops there. A Job
					// takes its configuration some other way.
					if o.obj.Kind == "Job" && namedByContent(name, hashed) {
						t.Errorf("%s: Job %s reads ConfigMap %s, named by its content: a change to what it is generated "+
							"from makes the Job's template differ, which apply refuses (a Job's template is immutable)",
							dir, o.obj.Name, name)
					}
				}
			}
		}
		checked := 0
		for _, file := range files {
			orig, err := mem.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := mem.WriteFile(file, append(append(bytes.Clone(orig), '\n'), marker...)); err != nil {
				t.Fatal(err)
			}
			after := builtObjects(t, mem, path.Join("/deploy", dir))
			if err := mem.WriteFile(file, orig); err != nil {
				t.Fatal(err)
			}
			changed := map[string]bool{} // namespace/name of the ConfigMaps that hold the change, as the new build names them
			for _, o := range after {
				if cm, ok := o.obj.Value.(*corev1.ConfigMap); ok {
					for _, v := range cm.Data {
						if strings.Contains(v, marker) {
							changed[o.obj.Namespace+"/"+o.obj.Name] = true
						}
					}
				}
			}
			for id, o := range after {
				spec := podSpec(o.obj)
				if spec == nil {
					continue
				}
				for _, name := range configMapsRead(spec) {
					if !changed[o.obj.Namespace+"/"+name] {
						continue
					}
					checked++
					if old, ok := before[id]; ok && bytes.Equal(old.json, o.json) {
						t.Errorf("%s: %s %s reads ConfigMap %s, which a change to %s changed, but the %s did not change: "+
							"an apply leaves its pods running on the old content", dir, o.obj.Kind, o.obj.Name, name,
							strings.TrimPrefix(file, "/deploy/"), o.obj.Kind)
					}
				}
			}
		}
		if checked == 0 && dir != "k8s/base" {
			t.Errorf("%s: no workload reads a ConfigMap generated from a file: follow the mounts here", dir)
		}
	}
}

// builtObject is one object of a build with its JSON, to tell whether a change reached it.
type builtObject struct {
	obj  object
	json []byte
}

// inMemory copies the trees the builds span into memory, under /deploy.
func inMemory(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	for _, dir := range []string{"k8s", "observability", "kafka"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return mem.WriteFile(path.Join("/deploy", filepath.ToSlash(p)), b)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// builtObjects runs kustomize on dir of fsys and returns its objects by kind, namespace and name.
func builtObjects(t *testing.T, fsys filesys.FileSystem, dir string) map[string]builtObject {
	t.Helper()
	kustomizeMu.Lock()
	k := runKustomize(fsys, dir)
	kustomizeMu.Unlock()
	if k.err != nil {
		t.Fatal(k.err)
	}
	out := map[string]builtObject{}
	for _, r := range k.resources {
		v, err := newTyped(r.kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r.json, v); err != nil {
			t.Fatalf("%s %s: %v", r.kind, r.name, err)
		}
		o := object{Kind: r.kind, Namespace: r.namespace, Name: r.name, Value: v}
		out[o.Kind+"/"+o.Namespace+"/"+o.Name] = builtObject{o, r.json}
	}
	return out
}

// generators returns the files the kustomizations under /deploy generate ConfigMaps from, and the names of the
// ConfigMap generators whose output kustomize names by its content (a hash suffix, unless disableNameSuffixHash).
func generators(t *testing.T, fsys filesys.FileSystem) (files, hashed []string) {
	t.Helper()
	err := fsys.Walk("/deploy", func(p string, info fs.FileInfo, err error) error {
		if err != nil || info.IsDir() || path.Base(p) != "kustomization.yaml" {
			return err
		}
		b, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		var k types.Kustomization
		if err := yaml.Unmarshal(b, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, g := range k.ConfigMapGenerator {
			if o := types.MergeGlobalOptionsIntoLocal(g.Options, k.GeneratorOptions); o == nil || !o.DisableNameSuffixHash {
				hashed = append(hashed, g.Name)
			}
			for _, f := range g.FileSources {
				if _, src, ok := strings.Cut(f, "="); ok {
					f = src
				}
				files = append(files, path.Join(path.Dir(p), f))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, hashed
}

// namedByContent reports whether name is the output of one of the hashed generators: the generator's name, a dash
// and the hash.
func namedByContent(name string, hashed []string) bool {
	for _, g := range hashed {
		if rest, ok := strings.CutPrefix(name, g+"-"); ok && rest != "" && !strings.Contains(rest, "-") {
			return true
		}
	}
	return false
}

// configMapsRead names every ConfigMap a pod reads: mounted, projected, or as environment variables.
func configMapsRead(spec *corev1.PodSpec) []string {
	var names []string
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			names = append(names, v.ConfigMap.Name)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					names = append(names, s.ConfigMap.Name)
				}
			}
		}
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef != nil {
				names = append(names, from.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				names = append(names, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	return names
}
