package policies

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InjectionConfig is what the manager's flags decide about every mutation.
type InjectionConfig struct {
	// ForwardProxyURL is the value of HTTP_PROXY and HTTPS_PROXY: the proxy's forward listener,
	// with no credentials (the proxy identifies the pod by its address).
	ForwardProxyURL string
	// PullHost is the host[:port] rewritten images point at (the node pull listener).
	PullHost string
	// NoProxy are the NO_PROXY entries the webhook adds to the user's.
	NoProxy []string
}

// DefaultNoProxy are always in NO_PROXY: loopback and in-cluster names.
var DefaultNoProxy = []string{"localhost", "127.0.0.1", "::1", ".svc", ".cluster.local"}

// Env names the injection manages.
const (
	EnvHTTPProxy        = "HTTP_PROXY"
	EnvHTTPSProxy       = "HTTPS_PROXY"
	EnvNoProxy          = "NO_PROXY"
	EnvDockerConfig     = "DOCKER_CONFIG"
	EnvRegistryAuthFile = "REGISTRY_AUTH_FILE"
	EnvSSLCertDir       = "SSL_CERT_DIR"
)

// ResolvedConnector is a connector the workload may use, as the webhook found it.
type ResolvedConnector struct {
	Ref     ConnectorRef
	Address string // spec.address
	// NotReady, when set, is why the connector is not Ready (the workload is admitted with a
	// warning: the condition is usually transient and the proxy reports the real error).
	NotReady string
}

// Workload is the part of a Pod or Job the injection changes: the pod metadata (the Pod's or
// the Job template's) and the pod spec. Inject mutates both in place.
type Workload struct {
	Namespace string
	Meta      *metav1.ObjectMeta
	Spec      *corev1.PodSpec
	// Stored is the stored object's pod spec on UPDATE (nil on CREATE). A Pod's containers and
	// a Job's template cannot change, so the mounts an earlier version injected are kept in the
	// shape that version gave them (legacyCAFileMount).
	Stored *corev1.PodSpec
}

// Status is the JSON in AnnotationStatus.
type Status struct {
	Connectors []string          `json:"connectors"`
	Volume     string            `json:"volume,omitempty"`
	Env        []string          `json:"env,omitempty"`
	Images     map[string]string `json:"images,omitempty"` // container name -> original image
}

// Outcome is what Inject reports besides the mutation itself.
type Outcome struct {
	// Warnings for partial results, returned to the client as admission warnings.
	Warnings []string
	// Rewritten counts rewritten images; Skipped counts containers left alone, by reason.
	Rewritten int
	Skipped   map[string]int
}

// Skip reasons for containers (bounded, for metrics).
const (
	SkipPullNever         = "image-pull-policy-never"
	SkipUnparsableImage   = "unparsable-image"
	SkipHostNetwork       = "host-network"
	SkipConnectorNotReady = "connector-not-ready"
)

// Inject applies the injection plan (docs/architecture.md "The webhook") to a workload. It
// is idempotent by construction: applied to its own output it changes nothing. An error means
// the workload must be denied; its message names what is wrong and how to fix it.
func Inject(cfg InjectionConfig, w Workload, connectors []ResolvedConnector, parts InjectSet) (Outcome, error) {
	out := Outcome{Skipped: map[string]int{}}
	hosts, err := connectorHosts(connectors)
	if err != nil {
		return out, err
	}
	for _, c := range connectors {
		if c.NotReady != "" {
			out.Warnings = append(out.Warnings, fmt.Sprintf("connector %s is not Ready (%s): the workload is admitted, but pulls and pushes through it fail until it is", c.Ref, c.NotReady))
			out.Skipped[SkipConnectorNotReady]++
		}
	}
	if w.Spec.HostNetwork {
		out.Warnings = append(out.Warnings, "the pod uses hostNetwork: the proxy cannot identify it by its address, so the forward proxy refuses it unless it sends a token (use the files in "+MountPath+")")
		out.Skipped[SkipHostNetwork]++
	}
	prior := readStatus(w.Meta)
	status := Status{Connectors: refStrings(connectors)}

	containers := allContainers(w.Spec)
	if parts.Volume {
		if err := injectVolume(w.Spec, status.Connectors); err != nil {
			return out, err
		}
		for _, c := range containers {
			if err := injectMounts(c, hosts, w.Stored); err != nil {
				return out, err
			}
		}
		status.Volume = VolumeName
	}
	if parts.Env {
		managed := managedEnv(cfg, parts.Volume)
		for _, c := range containers {
			out.Warnings = append(out.Warnings, injectEnv(c, managed)...)
		}
		for _, e := range managed {
			status.Env = append(status.Env, e.name)
		}
	}
	if parts.Images {
		images, err := rewriteImages(cfg, containers, hosts, connectors, prior, &out)
		if err != nil {
			return out, err
		}
		if len(images) > 0 {
			status.Images = images
		}
	}

	raw, err := json.Marshal(status)
	if err != nil {
		return out, err
	}
	if w.Meta.Annotations == nil {
		w.Meta.Annotations = map[string]string{}
	}
	w.Meta.Annotations[AnnotationStatus] = string(raw)
	if w.Meta.Labels == nil {
		w.Meta.Labels = map[string]string{}
	}
	w.Meta.Labels[LabelProxyInjected] = "true"
	return out, nil
}

// connectorHosts maps each registry host to its connector; two connectors on one host are
// ambiguous (which account would an image of that host use?).
func connectorHosts(connectors []ResolvedConnector) (map[string]hostEntry, error) {
	hosts := map[string]hostEntry{}
	for _, c := range connectors {
		h, err := RegistryHostOf(c.Address)
		if err != nil {
			return nil, fmt.Errorf("connector %s: %v: fix its spec.address", c.Ref, err)
		}
		if other, ok := hosts[h.Host]; ok {
			return nil, fmt.Errorf("annotation %s names connectors %s and %s, which both point at registry %s: images of that registry would be ambiguous; name only one of them",
				AnnotationConnector, other.ref, c.Ref, h.Host)
		}
		hosts[h.Host] = hostEntry{ref: c.Ref, host: h}
	}
	return hosts, nil
}

type hostEntry struct {
	ref  ConnectorRef
	host RegistryHost
}

func refStrings(connectors []ResolvedConnector) []string {
	out := make([]string, 0, len(connectors))
	for _, c := range connectors {
		out = append(out, c.Ref.String())
	}
	sort.Strings(out)
	return out
}

// namedContainer is a container with its place in the pod spec, for messages.
type namedContainer struct {
	*corev1.Container
	kind string // "container" or "init container"
}

// allContainers lists init containers (native sidecars included) and containers. Ephemeral
// containers arrive through their own subresource and are not mutated (documented).
func allContainers(spec *corev1.PodSpec) []namedContainer {
	var out []namedContainer
	for i := range spec.InitContainers {
		out = append(out, namedContainer{&spec.InitContainers[i], "init container"})
	}
	for i := range spec.Containers {
		out = append(out, namedContainer{&spec.Containers[i], "container"})
	}
	return out
}

func desiredVolume(connectors []string) corev1.Volume {
	readOnly := true
	return corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver:   CSIDriverName,
		ReadOnly: &readOnly,
		VolumeAttributes: map[string]string{
			CSIAttrConnectors:         strings.Join(connectors, ","),
			CSIAttrConfigurationNames: DefaultConfigurationNames,
		},
	}}}
}

func injectVolume(spec *corev1.PodSpec, connectors []string) error {
	want := desiredVolume(connectors)
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.Name != VolumeName {
			continue
		}
		if v.CSI != nil && v.CSI.Driver == CSIDriverName {
			// Ours, perhaps from a copied spec naming other connectors: make it match this plan.
			*v = want
			return nil
		}
		return fmt.Errorf("the pod already has a volume named %q that is not the %s CSI volume: rename that volume, the name is reserved for harbor-connector", VolumeName, CSIDriverName)
	}
	spec.Volumes = append(spec.Volumes, want)
	return nil
}

// injectMounts mounts the volume at MountPath, and its DirContainersCA directory where
// containers/image looks for each connector host's CA. The directory, not its file: a subPath
// mount binds what the subPath resolves to when the container starts, and the CSI driver
// replaces files inside that directory by rename, so a directory mount follows CA renewals
// where a file mount would keep the old CA. stored is the stored pod spec on UPDATE, whose
// legacy file mounts are kept (legacyCAFileMount).
func injectMounts(c namedContainer, hosts map[string]hostEntry, stored *corev1.PodSpec) error {
	want := []corev1.VolumeMount{{Name: VolumeName, MountPath: MountPath, ReadOnly: true}}
	for _, h := range sortedHosts(hosts) {
		if legacy, ok := legacyCAFileMount(stored, c.Name, h); ok {
			want = append(want, legacy)
			continue
		}
		want = append(want, corev1.VolumeMount{Name: VolumeName, ReadOnly: true, SubPath: DirContainersCA,
			MountPath: path.Join(ContainersCertsDir, h)})
	}
	// Drop our own mounts (a copied spec may carry another connector set), keep the user's.
	kept := c.VolumeMounts[:0:0]
	for _, m := range c.VolumeMounts {
		if m.Name == VolumeName {
			continue
		}
		for _, w := range want {
			if mountsClash(m, w) {
				return fmt.Errorf("%s %q already mounts volume %q at %s, in the way of harbor-connector's mount at %s: move that mount", c.kind, c.Name, m.Name, m.MountPath, w.MountPath)
			}
		}
		kept = append(kept, m)
	}
	c.VolumeMounts = append(kept, want...)
	return nil
}

// mountsClash reports whether a user's mount takes the place of one of ours, or lands inside our
// CA directory, where it would need a mount point in the read-only volume (the container would
// not start) or add files that containers/image reads as the host's CAs or client keys.
func mountsClash(user, ours corev1.VolumeMount) bool {
	p := path.Clean(user.MountPath)
	return p == ours.MountPath || ours.SubPath == DirContainersCA && strings.HasPrefix(p, ours.MountPath+"/")
}

// legacyCAFileMount finds, in the stored pod spec, the mount of the volume's FileCACert file at
// <ContainersCertsDir>/<host>/ca.crt that versions before the DirContainersCA mount injected
// into the named container (init containers and containers share one name space). The CSI driver
// still renders FileCACert for such pods.
func legacyCAFileMount(stored *corev1.PodSpec, container, host string) (corev1.VolumeMount, bool) {
	if stored == nil {
		return corev1.VolumeMount{}, false
	}
	for _, c := range allContainers(stored) {
		if c.Name != container {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == VolumeName && m.SubPath == FileCACert && m.MountPath == path.Join(ContainersCertsDir, host, FileCACert) {
				return m, true
			}
		}
	}
	return corev1.VolumeMount{}, false
}

func sortedHosts(hosts map[string]hostEntry) []string {
	out := make([]string, 0, len(hosts))
	for h := range hosts {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

type managedVar struct {
	name  string
	value string
	// listSep, when set, makes the variable a list merged with the user's value.
	listSep string
}

// managedEnv is every variable the injection sets, in a fixed order, each also in lower case
// where tools read only that form (curl reads only http_proxy).
func managedEnv(cfg InjectionConfig, withVolume bool) []managedVar {
	noProxy := strings.Join(dedupe(append(append([]string{}, DefaultNoProxy...), cfg.NoProxy...)), ",")
	vars := []managedVar{
		{name: EnvHTTPProxy, value: cfg.ForwardProxyURL},
		{name: EnvHTTPSProxy, value: cfg.ForwardProxyURL},
		{name: EnvNoProxy, value: noProxy, listSep: ","},
		{name: strings.ToLower(EnvHTTPProxy), value: cfg.ForwardProxyURL},
		{name: strings.ToLower(EnvHTTPSProxy), value: cfg.ForwardProxyURL},
		{name: strings.ToLower(EnvNoProxy), value: noProxy, listSep: ","},
	}
	if withVolume {
		vars = append(vars,
			managedVar{name: EnvDockerConfig, value: MountPath},
			managedVar{name: EnvRegistryAuthFile, value: path.Join(MountPath, FileDockerConfig)},
			managedVar{name: EnvSSLCertDir, value: SystemCertDir + ":" + path.Join(MountPath, DirCerts), listSep: ":"},
		)
	}
	return vars
}

// injectEnv adds the managed variables a container lacks. A user's own value is kept and
// answered with a warning; list variables (NO_PROXY, SSL_CERT_DIR) are merged instead.
func injectEnv(c namedContainer, managed []managedVar) []string {
	var warnings []string
	for _, m := range managed {
		i := envIndex(c.Env, m.name)
		switch {
		case i < 0:
			c.Env = append(c.Env, corev1.EnvVar{Name: m.name, Value: m.value})
		case c.Env[i].ValueFrom != nil:
			warnings = append(warnings, fmt.Sprintf("%s %q sets %s from a reference; kept it, so registry traffic may bypass the connectors proxy", c.kind, c.Name, m.name))
		case m.listSep != "":
			c.Env[i].Value = mergeList(c.Env[i].Value, m.value, m.listSep)
		case c.Env[i].Value != m.value:
			warnings = append(warnings, fmt.Sprintf("%s %q sets %s=%q; kept it, so registry traffic may bypass the connectors proxy (remove it to use the injected value)", c.kind, c.Name, m.name, c.Env[i].Value))
		}
	}
	return warnings
}

func envIndex(env []corev1.EnvVar, name string) int {
	for i := range env {
		if env[i].Name == name {
			return i
		}
	}
	return -1
}

// mergeList keeps the user's entries first and appends ours that are missing.
func mergeList(user, ours, sep string) string {
	var items []string
	for _, s := range strings.Split(user, sep) {
		if s = strings.TrimSpace(s); s != "" {
			items = append(items, s)
		}
	}
	items = append(items, strings.Split(ours, sep)...)
	return strings.Join(dedupe(items), sep)
}

func dedupe(items []string) []string {
	seen := map[string]bool{}
	out := items[:0:0]
	for _, s := range items {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// rewriteImages points every image of a connector's registry at the pull host and returns the
// original image of each rewritten container.
func rewriteImages(cfg InjectionConfig, containers []namedContainer, hosts map[string]hostEntry, connectors []ResolvedConnector, prior *Status, out *Outcome) (map[string]string, error) {
	annotated := map[ConnectorRef]bool{}
	for _, c := range connectors {
		annotated[c.Ref] = true
	}
	originals := map[string]string{}
	for _, c := range containers {
		if strings.TrimSpace(c.Image) == "" {
			continue // a template placeholder: nothing to pull
		}
		img, err := ParseImage(c.Image)
		if err != nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s %q: image %q does not parse (%v); left unchanged", c.kind, c.Name, c.Image, err))
			out.Skipped[SkipUnparsableImage]++
			continue
		}
		if strings.EqualFold(img.Domain, cfg.PullHost) {
			ref, repo, ok := ParseProxyPath(img.Path)
			if !ok || !annotated[ref] {
				return nil, fmt.Errorf("%s %q: image %q points at the connectors pull host but not at a connector this workload's annotation %s names: use the registry's own image name and name the connector in the annotation",
					c.kind, c.Name, c.Image, AnnotationConnector)
			}
			// Already rewritten (a second pass, or a pod from a mutated template).
			originals[c.Name] = originalImage(prior, c.Name, img, repo, ref, hosts)
			c.ImagePullPolicy = corev1.PullAlways
			continue
		}
		entry, ok := matchHost(img.Domain, hosts)
		if !ok {
			continue // another registry: untouched
		}
		if c.ImagePullPolicy == corev1.PullNever {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s %q has imagePullPolicy: Never, so its image %s is not rewritten (it must already be on the node)", c.kind, c.Name, c.Image))
			out.Skipped[SkipPullNever]++
			continue
		}
		rewritten, err := RewriteImage(img, cfg.PullHost, entry.ref)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %v", c.kind, c.Name, err)
		}
		originals[c.Name] = c.Image
		c.Image = rewritten
		// Each start is re-authorised by the proxy; cached layers are still reused.
		c.ImagePullPolicy = corev1.PullAlways
		out.Rewritten++
	}
	return originals, nil
}

func matchHost(domain string, hosts map[string]hostEntry) (hostEntry, bool) {
	for _, e := range hosts {
		if e.host.Matches(domain) {
			return e, true
		}
	}
	return hostEntry{}, false
}

// originalImage recovers what a rewritten container's image was: from the prior status when it
// recorded it, otherwise rebuilt from the connector's registry host.
func originalImage(prior *Status, container string, img Image, repo string, ref ConnectorRef, hosts map[string]hostEntry) string {
	if prior != nil {
		if orig, ok := prior.Images[container]; ok {
			return orig
		}
	}
	for h, e := range hosts {
		if e.ref == ref {
			return Image{Domain: h, Path: repo, Tag: img.Tag, Digest: img.Digest}.String()
		}
	}
	return ""
}

func readStatus(meta *metav1.ObjectMeta) *Status {
	raw, ok := meta.Annotations[AnnotationStatus]
	if !ok {
		return nil
	}
	var s Status
	if json.Unmarshal([]byte(raw), &s) != nil {
		return nil
	}
	return &s
}

// HasStatus reports whether the webhook mutated this object before.
func HasStatus(meta *metav1.ObjectMeta) bool {
	_, ok := meta.Annotations[AnnotationStatus]
	return ok
}
