package deploy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestEveryPodRunsUnderASeccompProfile: every container of every build runs under a seccomp profile, its own or its
// pod's. The kubelet's default is Unconfined (unless a node turns SeccompDefault on, which kind does not), so a pod
// that names none may make any system call. The restricted namespaces refuse such pods at admission; the eBPF
// agent's privileged namespace does not, and the agent named none: in Kubernetes it ran with no filter at all, where
// compose runs it under Docker's default profile. That profile, and containerd's RuntimeDefault like it, allow bpf,
// perf_event_open and setns (the agent's look into pods' network namespaces) to a process holding CAP_SYS_ADMIN, as
// the agent does.
func TestEveryPodRunsUnderASeccompProfile(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			for _, o := range build(t, dir) {
				spec := podSpec(o)
				if spec == nil {
					continue
				}
				var pod *corev1.SeccompProfile
				if spec.SecurityContext != nil {
					pod = spec.SecurityContext.SeccompProfile
				}
				for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
					p := pod
					if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
						p = c.SecurityContext.SeccompProfile
					}
					if p == nil || p.Type == corev1.SeccompProfileTypeUnconfined {
						t.Errorf("%s %s/%s, container %s: no seccomp profile (Unconfined): set RuntimeDefault", o.Kind, o.Namespace, o.Name, c.Name)
					}
				}
			}
		})
	}
}
