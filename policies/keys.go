// Package policies holds the rules every part of harbor-connector shares, as pure functions with
// no I/O: which connectors a namespace may use, how workload annotations are read, which images
// belong to a connector and how they are rewritten, and the injection plan the webhook applies.
// The webhook, the proxy and the CSI driver call these functions, so they cannot disagree.
package policies

// Labels and annotations: the workload-facing contract (README "Workload opt-in"; docs/architecture.md "Keys").
const (
	// LabelProxyInject, "true" on a Namespace, makes annotated workloads in it eligible for
	// injection. On a Pod or Job in a namespace without the label, "true" opts that one object
	// in; "false" on a Pod or Job always opts it out. Set by users.
	LabelProxyInject = "connectors.cpaas.io/proxy-inject"

	// AnnotationConnector names the connector(s) a Pod, Job or Job pod template uses:
	// "<name>" or "<namespace>/<name>", comma-separated for several. Set by users; the trigger.
	AnnotationConnector = "connectors.cpaas.io/connector"

	// AnnotationInject optionally limits what is injected: a comma-separated subset of
	// "volume", "env", "images". Default: all three. Set by users.
	AnnotationInject = "connectors.cpaas.io/inject"

	// LabelProxyInjected, "true", marks Pods and Job templates the webhook mutated; the proxy's
	// pod informer selects on it. Written by the webhook.
	LabelProxyInjected = "connectors.cpaas.io/proxy-injected"

	// AnnotationStatus is a JSON record of what the webhook injected (connectors, volume, env
	// names, the original image of each rewritten container). Written by the webhook; its
	// presence also marks an object whose UPDATEs the webhook re-mutates.
	AnnotationStatus = "connectors.cpaas.io/proxy-inject-status"

	// AnnotationTokenRealmHost, on a Connector, names another host allowed to serve the
	// registry's token realm (over https). By default the proxy sends credentials only to a realm
	// on the connector's own origin. Set by platform admins.
	AnnotationTokenRealmHost = "connectors.cpaas.io/token-realm-host"

	// AnnotationStorageRedirects, on a Connector, says what the proxy does with a registry's
	// redirect of a blob download to another host (object storage): "follow" (default: the
	// proxy fetches it, without credentials) or "pass-through" (the client follows it and needs
	// egress to that host). Set by platform admins.
	AnnotationStorageRedirects = "connectors.cpaas.io/storage-redirects"

	// LabelPullIdentity, on a Node, says how the proxy authorises the node's pulls through the
	// node pull listener: PullIdentityPod ("pod") requires the pulling pod's own token, which the
	// kubelet's connectors-credential-provider supplies, and checks that pod alone; absent or
	// any other value, a pull is allowed for any marked pod on the node that needs it. Set by
	// platform admins, per node pool (README "Per-pod pulls").
	LabelPullIdentity = "connectors.cpaas.io/pull-identity"
	// PullIdentityPod is LabelPullIdentity's per-pod value.
	PullIdentityPod = "pod"

	// AnnotationMirrorPod marks static pods mirrored by the kubelet; they are never mutated.
	AnnotationMirrorPod = "kubernetes.io/config.mirror"
)

// Connector visibility labels on Namespaces (the seed product's project model).
const (
	// LabelProject on a workload namespace names the project (group) it belongs to.
	LabelProject = "cpaas.io/project"
	// LabelInnerNamespace on a namespace marks it as the project's own namespace: its
	// connectors are usable from every namespace labelled LabelProject=<same group>.
	LabelInnerNamespace = "cpaas.io/inner-namespace"
	// PublicNamespace holds connectors every namespace may use.
	PublicNamespace = "kube-public"
)

// Install defaults every part agrees on (each is also a flag of the binaries that use it).
const (
	// DefaultAudience is the audience of the ServiceAccount tokens the proxy accepts: the CSI
	// driver renders tokens for it, the node listener's projected token carries it.
	DefaultAudience = "connectors-proxy"
	// DefaultPullHost is where rewritten images point: the node pull listener every node runs on
	// its loopback (container runtimes pull from loopback registries over plain HTTP).
	DefaultPullHost = "127.0.0.1:5050"
	// DefaultProxyHost is the proxy's Service as the install names it (config/proxy): the host
	// workloads, the CSI driver's files and the node pull listeners reach the proxy at.
	DefaultProxyHost = "connectors-proxy.connectors-system.svc"
	// DefaultForwardProxyURL is the proxy's plain forward listener (port 3128) at that host.
	DefaultForwardProxyURL = "http://" + DefaultProxyHost + ":3128"
)

// The injected volume and its files (docs/architecture.md "The webhook", "The CSI driver").
const (
	// VolumeName is the one CSI volume injected for all of a workload's connectors.
	VolumeName = "connectors-proxy"
	// MountPath is where that volume is mounted, read-only, in every container.
	MountPath = "/var/run/connectors"
	// CSIDriverName is the node driver that renders the volume's files.
	CSIDriverName = "connectors-csi"

	// CSIAttrConnectors lists the connectors a volume serves: "<ns>/<a>,<ns>/<b>".
	CSIAttrConnectors = "connectors"
	// CSIAttrConnectorName and CSIAttrConnectorNamespace name one connector (seed form).
	CSIAttrConnectorName      = "connector.name"
	CSIAttrConnectorNamespace = "connector.namespace"
	// CSIAttrConfigurationNames lists the configuration files to render; "!name" excludes one.
	CSIAttrConfigurationNames = "configuration.names"

	// DefaultConfigurationNames are rendered unless the workload asks otherwise:
	// registry-config (config.json) and buildkitd (buildkitd.toml).
	DefaultConfigurationNames = "registry-config,buildkitd"

	// FileDockerConfig is the Docker-style auth file inside the volume.
	FileDockerConfig = "config.json"
	// FileCACert is the CA bundle (proxy serving CA + interception CA) inside the volume.
	FileCACert = "ca.crt"
	// DirCerts holds the CA under its OpenSSL hash name, for SSL_CERT_DIR.
	DirCerts = "certs"
	// DirContainersCA holds only the CA bundle, as FileCACert, for containers/image, which
	// reads every *.crt, *.cert and *.key of a registry's certs.d directory. The CSI driver
	// keeps it a real directory at the volume's top level, outside the ..data swap, and replaces
	// the file in it by rename, so the webhook's subPath mount of the directory follows every
	// re-render (a subPath mount of a file keeps the file it resolved at container start).
	DirContainersCA = "containers-ca"
	// ContainersCertsDir is where containers/image (skopeo, buildah, podman) looks for a
	// registry's CA: <dir>/<host[:port]>/*.crt. The webhook mounts DirContainersCA at
	// <dir>/<host[:port]> for each connector host.
	ContainersCertsDir = "/etc/containers/certs.d"
	// SystemCertDir is the system CA directory kept first in SSL_CERT_DIR.
	SystemCertDir = "/etc/ssl/certs"
)

// InjectPart is one thing the webhook can inject.
type InjectPart string

// The parts AnnotationInject can name.
const (
	InjectVolume InjectPart = "volume"
	InjectEnv    InjectPart = "env"
	InjectImages InjectPart = "images"
)
