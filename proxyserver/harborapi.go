package proxyserver

import (
	"fmt"
	"net/http"
	"net/http/httputil"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// relayHarborAPI relays a Harbor API call (harbor-cli, curl) of an intercepted tunnel to the
// connector's Harbor with the connector's Basic credentials, which Harbor's API takes.
func relayHarborAPI(w http.ResponseWriter, r *http.Request, resolver *access.Resolver, id identity.Identity, ref policies.ConnectorRef, reg *upstream.Registry) {
	if err := resolver.CheckVisible(r.Context(), id.Namespace, ref); err != nil {
		writeError(w, codeDenied, ref.String(), err.Error())
		return
	}
	origin := reg.Origin()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = origin.Scheme, origin.Host
			pr.Out.Host = origin.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			if auth := reg.BasicAuthorization(); auth != "" {
				pr.Out.Header.Set("Authorization", auth)
			}
		},
		Transport: reg.Transport(),
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Www-Authenticate")
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("Harbor of connector %s could not be reached: %v", ref, unwrapURL(err)))
		},
	}
	proxy.ServeHTTP(w, r)
}
