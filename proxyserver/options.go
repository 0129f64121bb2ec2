package proxyserver

import (
	"github.com/go-logr/logr"

	"errors"
	"fmt"
	"time"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/policies/registryauth"
	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// Options configure the proxy: the central handler (NewHandler), its forward listener (Forward,
// for NewForward) and the node pull listener (Node, for NewNodeForwarder). DefaultOptions holds
// every default; the proxy's flags start from it, and so do the tests, which override only what
// they must. Nothing fills in a zero value later.
type Options struct {
	// AuditLog receives the one line per request (audit.go); zero means the proxy's own
	// logger. cmd/proxy gives it one that never samples: production zap keeps the first 100
	// lines of a message per second and then 1 in 100, and every request line is one message.
	AuditLog logr.Logger
	// Audiences the proxy accepts ServiceAccount tokens for.
	Audiences []string
	// TokenReviewTTL: how long an accepted token is trusted without a new TokenReview (bounded
	// by its expiry); TokenReviewNegativeTTL: how long a refused one is remembered.
	TokenReviewTTL         time.Duration
	TokenReviewNegativeTTL time.Duration
	// MaxStreamsPerIdentity and MaxStreamsPerConnector cap concurrent transfers; 0: unlimited.
	MaxStreamsPerIdentity  int
	MaxStreamsPerConnector int
	// MaxTokenFetches bounds concurrent upstream token fetches per connector.
	MaxTokenFetches int
	// StallTimeout aborts a transfer that moves no bytes for this long.
	StallTimeout time.Duration
	// NodeForwarders are the ServiceAccounts ("<namespace>/<name>") of the node pull listeners;
	// empty disables node pulls.
	NodeForwarders []string
	// ConnectorLiveReads limits the live reads of connectors and namespaces the informer has not
	// cached yet; NodePullLiveReads those of pods behind node pulls the index of marked pods
	// cannot justify yet (LiveReads).
	ConnectorLiveReads LiveReadsLimit
	NodePullLiveReads  LiveReadsLimit
	// CredentialsNamespace is where the manager keeps its copies of connectors' credentials:
	// the only namespace whose Secrets the proxy reads (the manager's --credentials-namespace).
	CredentialsNamespace string
	// Dial overrides how registries are dialled (tests map host names to loopback).
	Dial registryauth.DialFunc

	// Forward configures the forward (HTTPS_PROXY) listener.
	Forward ForwardOptions
	// Node configures the node pull listener (--mode=node), which uses nothing else here.
	Node NodeOptions
}

// ForwardOptions configure the forward listener (NewForward).
type ForwardOptions struct {
	// InterceptCADir holds the interception CA's tls.crt and tls.key (re-read on rotation).
	InterceptCADir string
	// PermittedDomains are the only domains leaves are minted for; empty: any connector host.
	PermittedDomains []string
	// TunnelMode, TunnelAllow and ClusterCIDRs are the tunnel policy (policies.TunnelPolicy)
	// for CONNECTs to hosts that are not connectors' registries; ClusterCIDRs are never reached.
	TunnelMode   policies.TunnelMode
	TunnelAllow  []string
	ClusterCIDRs []string
	// TunnelDialTimeout bounds connecting a tunnel to its checked address.
	TunnelDialTimeout time.Duration
	// PodIdentity identifies callers without a credential by the source address of a running
	// pod the webhook marked (PodsByIP).
	PodIdentity bool
	// PodWait is how long an unknown source address waits for the index of marked pods to learn
	// it (PodsByIP.Wait).
	PodWait time.Duration
	// PodLiveReads limits the live pod reads once PodWait is over without a match (LiveReads).
	PodLiveReads LiveReadsLimit
}

// NodeOptions configure the node pull listener (NewNodeForwarder).
type NodeOptions struct {
	// Upstream is the central proxy's reverse listener (its Service), an https:// URL.
	Upstream string
	// TokenFile is the listener's projected ServiceAccount token (audience connectors-proxy);
	// CAFile the bundle that verifies the central proxy.
	TokenFile, CAFile string
	// Recheck is how often TokenFile and CAFile are re-read, so a rotated token or CA is used
	// without a restart.
	Recheck time.Duration
}

// LiveReadsLimit is the token bucket of one LiveReads: QPS reads a second, bursts of Burst.
type LiveReadsLimit struct {
	QPS   float32
	Burst int
}

// DefaultOptions are the proxy's defaults (the install's values).
func DefaultOptions() Options {
	// A few live reads a second per kind cover pods and connectors whose first request beats
	// the informer, and are a load the API server does not notice.
	liveReads := LiveReadsLimit{QPS: 5, Burst: 10}
	return Options{
		Audiences:              []string{identity.DefaultAudience},
		TokenReviewTTL:         time.Minute,
		TokenReviewNegativeTTL: 10 * time.Second,
		MaxStreamsPerIdentity:  64,
		MaxStreamsPerConnector: 512,
		MaxTokenFetches:        4,
		StallTimeout:           2 * time.Minute,
		NodeForwarders:         []string{"connectors-node/connectors-node"},
		ConnectorLiveReads:     liveReads,
		NodePullLiveReads:      liveReads,
		CredentialsNamespace:   access.DefaultCredentialsNamespace,
		Forward: ForwardOptions{
			InterceptCADir:    "/etc/connectors/intercept-ca",
			TunnelMode:        policies.TunnelPublic,
			TunnelDialTimeout: 10 * time.Second,
			PodIdentity:       true,
			// A pod's first request often comes within milliseconds of its container starting,
			// before the kubelet's status update carrying its IP has reached the proxy's watch.
			PodWait:      5 * time.Second,
			PodLiveReads: liveReads,
		},
		Node: NodeOptions{
			Upstream:  "https://" + policies.DefaultProxyHost,
			TokenFile: "/var/run/secrets/connectors/token",
			CAFile:    "/etc/connectors/proxy-ca/ca.crt",
			Recheck:   10 * time.Second,
		},
	}
}

// check refuses the handler values with which the proxy could not serve at all. It fills
// nothing in: a value given is the value used.
func (o Options) check() error {
	switch {
	case len(o.Audiences) == 0:
		// A TokenReview without audiences would accept tokens issued for the API server.
		return fmt.Errorf("--audience is empty: the proxy needs the token audience it accepts (%s)", identity.DefaultAudience)
	case o.CredentialsNamespace == "":
		return errors.New("--credentials-namespace is empty: the proxy reads connectors' credentials from the manager's copies there")
	case o.MaxTokenFetches < 1:
		return fmt.Errorf("--max-token-fetches=%d: at least 1, or every token fetch is refused", o.MaxTokenFetches)
	case o.StallTimeout <= 0:
		return fmt.Errorf("--stall-timeout=%s: must be positive, or every transfer is aborted at once", o.StallTimeout)
	}
	return nil
}
