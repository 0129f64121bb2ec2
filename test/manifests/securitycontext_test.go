package manifests_test

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// rootWorkloads may run as root, and why; every other workload runs as the strictest user.
var rootWorkloads = map[string]string{
	"connectors-csi": "mounts each volume's tmpfs into the kubelet's pods directory: privileged, Bidirectional",
}

// Every workload runs as strictly as its component allows, judged container by container on
// the security context the kubelet applies (the container's fields over the pod's).
func TestInstallSecurityContexts(t *testing.T) {
	for _, w := range renderedWorkloads(t) {
		t.Run(w.name, func(t *testing.T) {
			spec := w.template.Spec
			_, root := rootWorkloads[w.name]
			for _, ctr := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
				sc := effectiveSecurityContext(spec.SecurityContext, ctr.SecurityContext)
				assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, ptr.Deref(sc.SeccompProfile, corev1.SeccompProfile{}).Type, "%s: seccomp", ctr.Name)
				assert.True(t, ptr.Deref(sc.ReadOnlyRootFilesystem, false), "%s writes to its root filesystem (give it an emptyDir instead)", ctr.Name)
				require.NotNil(t, sc.RunAsUser, "%s: a numeric user, so the kubelet's runAsNonRoot check needs nothing of the image", ctr.Name)
				if ptr.Deref(sc.RunAsNonRoot, false) {
					assert.NotZero(t, *sc.RunAsUser, "%s: the kubelet refuses runAsNonRoot with user 0", ctr.Name)
				}
				if root {
					assert.True(t, ptr.Deref(sc.Privileged, false), "%s: %s", ctr.Name, rootWorkloads[w.name])
					continue
				}
				assert.Equal(t, int64(65532), *sc.RunAsUser, ctr.Name)
				assert.Equal(t, int64(65532), ptr.Deref(sc.RunAsGroup, 0), ctr.Name)
				assert.True(t, ptr.Deref(sc.RunAsNonRoot, false), ctr.Name)
				assert.False(t, ptr.Deref(sc.Privileged, false), ctr.Name)
				assert.False(t, ptr.Deref(sc.AllowPrivilegeEscalation, true), "%s: allowPrivilegeEscalation", ctr.Name)
				require.NotNil(t, sc.Capabilities, ctr.Name)
				assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, ctr.Name)
				assert.Empty(t, sc.Capabilities.Add, ctr.Name)
				for _, port := range boundPorts(ctr) {
					assert.GreaterOrEqual(t, port, 1024, "%s binds a privileged port, which takes NET_BIND_SERVICE", ctr.Name)
				}
			}
			var bidirectional []string
			for _, ctr := range spec.Containers {
				for _, m := range ctr.VolumeMounts {
					if ptr.Deref(m.MountPropagation, corev1.MountPropagationNone) == corev1.MountPropagationBidirectional {
						bidirectional = append(bidirectional, m.Name)
						v := volumeNamed(spec, m.Name)
						require.NotNil(t, v)
						require.NotNil(t, v.HostPath, "Bidirectional on %s", m.Name)
						assert.True(t, strings.HasSuffix(v.HostPath.Path, "/pods"), "only the kubelet's pods directory: %s", v.HostPath.Path)
						assert.Equal(t, v.HostPath.Path, m.MountPath, "at its node path, where the kubelet's target paths point")
					}
				}
			}
			if root {
				assert.Len(t, bidirectional, 1, "one Bidirectional mount: the pods directory")
			} else {
				assert.Empty(t, bidirectional)
				for _, v := range spec.Volumes {
					assert.Nil(t, v.HostPath, "%s mounts the node's %s", w.name, v.Name)
				}
			}
		})
	}
}

// effectiveSecurityContext is what the kubelet applies to a container: its own fields, else
// the pod's.
func effectiveSecurityContext(pod *corev1.PodSecurityContext, ctr *corev1.SecurityContext) corev1.SecurityContext {
	var out corev1.SecurityContext
	if ctr != nil {
		out = *ctr.DeepCopy()
	}
	if pod == nil {
		return out
	}
	if out.RunAsUser == nil {
		out.RunAsUser = pod.RunAsUser
	}
	if out.RunAsGroup == nil {
		out.RunAsGroup = pod.RunAsGroup
	}
	if out.RunAsNonRoot == nil {
		out.RunAsNonRoot = pod.RunAsNonRoot
	}
	if out.SeccompProfile == nil {
		out.SeccompProfile = pod.SeccompProfile
	}
	return out
}

// boundPorts are the container's declared ports and those of its --*-address=host:port flags.
func boundPorts(ctr corev1.Container) []int {
	var out []int
	for _, p := range ctr.Ports {
		out = append(out, int(p.ContainerPort))
	}
	for _, a := range ctr.Args {
		flag, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasSuffix(flag, "-address") {
			continue
		}
		if _, port, err := net.SplitHostPort(value); err == nil {
			if n, err := strconv.Atoi(port); err == nil && n != 0 {
				out = append(out, n)
			}
		}
	}
	return out
}

func volumeNamed(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}
