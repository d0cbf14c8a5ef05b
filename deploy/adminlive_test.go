package deploy

import (
	"strconv"
	"strings"
	"testing"
)

// TestLivenessIsAskedWhereTheAdminListenerIs: a binary whose liveness is asked on its admin listener (LivenessPort:
// the gateway, whose public port its client cap covers) answers it only where ADMIN_ADDR listens. Empty, the gateway
// serves no admin listener, and every liveness probe fails: the pod is restarted for ever. In Kubernetes a loopback
// address is unreachable too, as the kubelet probes the pod's IP; compose's healthcheck runs inside the container, so
// there the port alone must match. The gateway does not refuse an empty ADMIN_ADDR itself: a run without a prober
// (tests, benchmarks, a laptop) may want no admin listener, and only the deployment knows it probes one.
// TestMetricsOfThePublicDoorStayInside held ADMIN_ADDR to the metrics port, which covered liveness only while the two
// ports are one.
func TestLivenessIsAskedWhereTheAdminListenerIs(t *testing.T) {
	p := loadCompose(t, "load")
	checked := 0
	for _, b := range Binaries {
		if b.LivenessPort == 0 {
			continue
		}
		checked++
		s, ok := p.Services[b.Name]
		if !ok {
			t.Fatalf("compose: no service %s", b.Name)
		}
		if addr := value(s.Environment["ADMIN_ADDR"]); !strings.HasSuffix(addr, ":"+strconv.Itoa(b.LivenessPort)) {
			t.Errorf("compose %s: ADMIN_ADDR=%q, but its healthcheck asks liveness at port %d", b.Name, addr, b.LivenessPort)
		}
	}
	if checked == 0 {
		t.Fatal("no binary has a LivenessPort: the test checks nothing")
	}
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, cms map[string]map[string]string) {
		if b.LivenessPort == 0 {
			return
		}
		addr := containerEnv(t, b.Name, w, cms)["ADMIN_ADDR"]
		if !strings.HasSuffix(addr, ":"+strconv.Itoa(b.LivenessPort)) || strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost:") {
			t.Errorf("%s: ADMIN_ADDR=%q, but the kubelet asks liveness at the pod's IP, port %d", b.Name, addr, b.LivenessPort)
		}
	})
}

// containerEnv is what w's first container sets as written: its envFrom ConfigMaps' keys, then its env values
// (references and secrets not resolved; kubeletEnv resolves them).
func containerEnv(t *testing.T, name string, w workload, cms map[string]map[string]string) map[string]string {
	t.Helper()
	c := w.spec.Containers[0]
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		for _, k := range configMapKeys(t, cms, w.namespace, name, from) {
			env[k] = cms[w.namespace+"/"+from.ConfigMapRef.Name][k[len(from.Prefix):]]
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}
