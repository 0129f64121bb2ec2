package proxyserver

import (
	"context"
	"net/url"

	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// upstreamCall is what the handler decided about one request before relaying it. The handler
// builds it once and hands it to the relay through the request context (httputil.ReverseProxy's
// hooks see only the request); nothing after that changes it.
type upstreamCall struct {
	route    Route
	registry *upstream.Registry
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
	// clientBody is the client's request body as the listener counts it (nil without one): the
	// relay tells a client that went away mid-upload from a registry that failed by it.
	clientBody *countingBody
}

// url is the registry URL the call goes to.
func (c *upstreamCall) url() *url.URL {
	u := *c.registry.Origin()
	u.Path = c.route.UpstreamPath()
	u.RawQuery = c.query
	return &u
}

type callKey struct{}

func withCall(ctx context.Context, c *upstreamCall) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *upstreamCall {
	c, _ := ctx.Value(callKey{}).(*upstreamCall)
	return c
}
