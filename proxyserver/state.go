package proxyserver

import (
	"context"

	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// requestState is what the handler decided about one request, carried to the reverse proxy's
// Rewrite, transport and response hooks through the request context.
type requestState struct {
	route    Route
	registry *upstream.Registry
	identity identity.Identity
	scopes   []string
	// auth is the upstream Authorization value ("" for registries that need none).
	auth string
	// query is the outbound raw query (mount parameters rewritten or dropped).
	query string
	// native: forward mode, the client uses the registry's own paths, so Location and Link
	// headers need no rewriting.
	native bool
	// passRedirects: hand storage redirects to the client instead of following them.
	passRedirects bool
	// cancel aborts the upstream exchange (stall timers use it).
	cancel context.CancelCauseFunc
	// tokenCached records whether the upstream credential came from the cache (audit).
	tokenCached bool
}

type stateKey struct{}

func withState(ctx context.Context, s *requestState) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

func stateFrom(ctx context.Context) *requestState {
	s, _ := ctx.Value(stateKey{}).(*requestState)
	return s
}
