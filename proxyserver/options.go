package proxyserver

import (
	"time"

	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/policies/registryauth"
	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// Options configure the proxy's handler. DefaultOptions holds every default; NewHandler fills a
// zero field from it, so the main's flags and the tests share one set.
type Options struct {
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
	// CredentialsNamespace is where the manager keeps its copies of connectors' credentials:
	// the only namespace whose Secrets the proxy reads (the manager's --credentials-namespace).
	CredentialsNamespace string
	// Dial overrides how registries are dialled (tests map host names to loopback).
	Dial registryauth.DialFunc
}

// DefaultOptions are the proxy's defaults (the install's values).
func DefaultOptions() Options {
	return Options{
		Audiences:              []string{identity.DefaultAudience},
		TokenReviewTTL:         time.Minute,
		TokenReviewNegativeTTL: 10 * time.Second,
		MaxStreamsPerIdentity:  64,
		MaxStreamsPerConnector: 512,
		MaxTokenFetches:        4,
		StallTimeout:           2 * time.Minute,
		NodeForwarders:         []string{"connectors-node/connectors-node"},
		CredentialsNamespace:   access.DefaultCredentialsNamespace,
	}
}

// withDefaults fills the fields whose zero value means nothing useful; zero stream limits mean
// unlimited and no node forwarders means no node pulls, so those stay as given.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if len(o.Audiences) == 0 {
		o.Audiences = d.Audiences
	}
	o.TokenReviewTTL = orDefault(o.TokenReviewTTL, d.TokenReviewTTL)
	o.TokenReviewNegativeTTL = orDefault(o.TokenReviewNegativeTTL, d.TokenReviewNegativeTTL)
	o.StallTimeout = orDefault(o.StallTimeout, d.StallTimeout)
	if o.CredentialsNamespace == "" {
		o.CredentialsNamespace = d.CredentialsNamespace
	}
	if o.MaxTokenFetches <= 0 {
		o.MaxTokenFetches = d.MaxTokenFetches
	}
	return o
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
