package proxyserver

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/go-logr/logr"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// relayHarborAPI relays an allowed Harbor API call (harbor-cli, curl; policies.HarborAPIAllowed)
// of an intercepted tunnel to the connector's Harbor with the connector's Basic credentials,
// which Harbor's API takes. path is the canonical path that was checked, sent as is.
func relayHarborAPI(w http.ResponseWriter, r *http.Request, path string, auth *authorizer, id identity.Identity, ref policies.ConnectorRef, reg *upstream.Registry, log logr.Logger) {
	if d := auth.visible(r.Context(), id.Namespace, ref); d != nil {
		writeError(w, d.code, ref.String(), d.message)
		return
	}
	origin := reg.Origin()
	unescaped, err := url.PathUnescape(path)
	if err != nil { // CanonicalPath admits only well-formed escapes
		writeError(w, codeNameInvalid, ref.String(), err.Error())
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = origin.Scheme, origin.Host
			pr.Out.URL.Path, pr.Out.URL.RawPath = unescaped, path
			pr.Out.Host = origin.Host
			dropCallerCredentials(pr.Out.Header)
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
			log.Error(unwrapURL(err), "relaying to Harbor's API", "connector", ref.String())
			writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("Harbor of connector %s could not be reached: retry, and see the Connector's conditions", ref))
		},
	}
	proxy.ServeHTTP(w, r)
}
