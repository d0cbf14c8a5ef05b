package deploy

import (
	"math"
	"strconv"
	"testing"
)

// TestGatewayEventLoopsMatchItsCPULimit: in Kubernetes the gateway runs one event loop per CPU its pod may use.
// GATEWAY_EVENT_LOOPS=0 (the default) leaves the count to gnet, which takes runtime.NumCPU: every CPU of the node,
// whatever the pod's CPU limit, so a gateway limited to one CPU on a 16-CPU node ran 16 loops, which the Go runtime
// (its GOMAXPROCS follows the limit: rounded up, at least 2) shared out on two threads. The value is read as the
// kubelet gives it (a resourceFieldRef of the CPU limit comes out rounded up to whole CPUs) and must be the limit's
// CPUs.
func TestGatewayEventLoopsMatchItsCPULimit(t *testing.T) {
	secretValues := kindUpSecrets(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			pods, cms := k8sWorkloads(t, objs)
			w, ok := pods["gateway"]
			if !ok {
				t.Fatal("no gateway in the build")
			}
			c := w.spec.Containers[0]
			limit, ok := c.Resources.Limits["cpu"]
			if !ok {
				return // no limit: the pod may use every CPU of its node, as gnet's default assumes
			}
			want := int(math.Ceil(float64(limit.MilliValue()) / 1000))
			env := kubeletEnv(t, objs, cms, secretValues, w)
			got, err := strconv.Atoi(env["GATEWAY_EVENT_LOOPS"])
			switch {
			case env["GATEWAY_EVENT_LOOPS"] == "" || err == nil && got == 0:
				t.Errorf("gateway: GATEWAY_EVENT_LOOPS is unset or 0, so gnet runs one loop per CPU of the node (runtime.NumCPU), not the %d its CPU limit %s allows", want, limit.String())
			case err != nil:
				t.Errorf("gateway: GATEWAY_EVENT_LOOPS=%q is not a count", env["GATEWAY_EVENT_LOOPS"])
			case got != want:
				t.Errorf("gateway: GATEWAY_EVENT_LOOPS=%d, but its CPU limit %s allows %d", got, limit.String(), want)
			}
		})
	}
}
