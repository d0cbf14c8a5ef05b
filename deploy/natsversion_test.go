package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestNATSIsTheReleaseTheTestsRun: compose and Kubernetes run the NATS release the repository's tests run against
// (scripts/deps.sh's NATS_VERSION), so what the tests prove of JetStream (sync_interval: always, dedup windows,
// redelivery) holds where the platform is deployed. Compose and Kubernetes ran 2.10.24 while the tests ran 2.14.9.
func TestNATSIsTheReleaseTheTestsRun(t *testing.T) {
	deps, err := os.ReadFile("../scripts/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^NATS_VERSION=v?(\S+)$`).FindSubmatch(deps)
	if m == nil {
		t.Fatal("scripts/deps.sh sets no NATS_VERSION")
	}
	want := string(m[1])

	images := map[string]string{} // where it runs: image reference
	s, ok := loadCompose(t).Services["nats"]
	switch {
	case !ok:
		t.Fatal("compose runs no nats service")
	case s.Build != nil:
		dockerfile := composeDockerfile(s.Build)
		b, err := os.ReadFile(dockerfile)
		if err != nil {
			t.Fatal(err)
		}
		froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(b), -1)
		if len(froms) == 0 {
			t.Fatalf("%s has no FROM", dockerfile)
		}
		images["compose (built from)"] = froms[len(froms)-1][1]
	default:
		images["compose"] = s.Image
	}
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			if spec := podSpec(o); spec != nil {
				for _, c := range spec.Containers {
					if strings.HasPrefix(c.Image, "nats:") {
						images[dir+" "+o.Name] = c.Image
					}
				}
			}
		}
	}
	if len(images) < 2 {
		t.Errorf("NATS images found: %v; want compose's and the kind build's", images)
	}
	for where, image := range images {
		repo, tag, _ := strings.Cut(image, ":")
		version, _, _ := strings.Cut(tag, "-") // 2.14.9-alpine
		if repo != "nats" || version != want {
			t.Errorf("%s runs %s; the tests run NATS %s (scripts/deps.sh)", where, image, want)
		}
	}
}
