package proxyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/alauda/harbor-connector/policies"
)

var bufferPool = &pool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type pool struct{ p sync.Pool }

func (b *pool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *pool) Put(v []byte) { b.p.Put(&v) }

// proxyHandler is the httputil.ReverseProxy every relayed request goes through. It streams
// bodies in both directions without buffering them.
func (h *Handler) proxyHandler() http.Handler {
	h.proxyOnce.Do(func() {
		h.proxy = &httputil.ReverseProxy{
			Rewrite:        rewriteRequest,
			Transport:      &upstreamTransport{stall: h.stall()},
			ModifyResponse: h.modifyResponse,
			ErrorHandler:   h.errorHandler,
			BufferPool:     bufferPool,
			// A registry that drops a transfer midway is reported to the client (the body ends
			// short); the standard library's own line about it goes to the debug log.
			ErrorLog: stdlog.New(logrWriter{h.Log.V(1)}, "", 0),
		}
	})
	return h.proxy
}

// logrWriter turns standard-library log lines into logr lines.
type logrWriter struct{ log logr.Logger }

func (w logrWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (h *Handler) stall() time.Duration {
	if h.StallTimeout > 0 {
		return h.StallTimeout
	}
	return 2 * time.Minute
}

// rewriteRequest points the outbound request at the connector's registry: its origin, the
// repository's own path, the rewritten query, and the connector's credential in place of the
// caller's (which, like cookies and proxy credentials, never leaves the proxy).
func rewriteRequest(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	origin := st.registry.Origin()
	out := pr.Out
	out.URL = &url.URL{Scheme: origin.Scheme, Host: origin.Host, Path: st.route.UpstreamPath(), RawQuery: st.query}
	out.Host = origin.Host
	out.Header.Del("Authorization")
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Cookie")
	if st.auth != "" {
		out.Header.Set("Authorization", st.auth)
	}
}

// upstreamTransport sends the request to the registry. A bodiless request the registry refuses
// is retried once with a fresh token (a cached token may have been revoked); redirects to the
// registry itself are followed with the credential, redirects elsewhere (object storage) are
// followed without it, unless the connector passes them through.
type upstreamTransport struct {
	stall time.Duration
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateFrom(req.Context())
	reg := st.registry
	resp, err := reg.Transport().RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && req.Body == nil && strings.HasPrefix(st.auth, "Bearer ") {
		drain(resp)
		reg.Invalidate(st.scopes)
		auth, _, err := reg.Authorization(req.Context(), st.scopes)
		if err != nil {
			return nil, err
		}
		st.auth = auth
		retry := req.Clone(req.Context())
		retry.Header.Set("Authorization", auth)
		if resp, err = reg.Transport().RoundTrip(retry); err != nil {
			return nil, err
		}
	}
	for hops := 0; isRedirect(resp.StatusCode) && (req.Method == http.MethodGet || req.Method == http.MethodHead) && hops < 5; hops++ {
		loc, err := resp.Location()
		if err != nil {
			return resp, nil
		}
		if reg.IsOrigin(loc) {
			drain(resp)
			next := req.Clone(req.Context())
			next.URL, next.Host = loc, loc.Host
			if resp, err = reg.Transport().RoundTrip(next); err != nil {
				return nil, err
			}
			continue
		}
		if st.passRedirects {
			return resp, nil
		}
		return t.followStorage(req, resp, loc)
	}
	return resp, nil
}

// followStorage fetches an object-storage redirect itself, with a fresh request carrying only
// Range, If-Range and Accept (never the registry credential: S3 rejects requests that carry
// Authorization besides a signed URL, moby#50065), and answers as if the registry had. A HEAD is
// answered from the redirect's own headers when they say enough, else from a one-byte ranged GET
// (object stores often refuse HEAD on GET-signed URLs).
func (t *upstreamTransport) followStorage(req *http.Request, redirect *http.Response, loc *url.URL) (*http.Response, error) {
	st := stateFrom(req.Context())
	drain(redirect)
	digest := redirect.Header.Get("Docker-Content-Digest")
	if digest == "" && st.route.Kind == KindBlob {
		digest = st.route.Rest
	}
	if req.Method == http.MethodHead && redirect.Header.Get("Content-Length") != "" && redirect.Header.Get("Content-Length") != "0" && digest != "" {
		return synthesized(req, http.StatusOK, redirect.Header.Get("Content-Length"), redirect.Header.Get("Content-Type"), digest, nil), nil
	}
	out, err := http.NewRequestWithContext(req.Context(), http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Range", "If-Range", "Accept"} {
		if v := req.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	if req.Method == http.MethodHead {
		out.Header.Set("Range", "bytes=0-0")
	}
	resp, err := st.registry.Storage().Do(out)
	if err != nil {
		return nil, fmt.Errorf("following the registry's storage redirect to %s: %w", loc.Host, unwrapURL(err))
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		drain(resp)
		return nil, fmt.Errorf("the registry's storage at %s answered HTTP %d", loc.Host, resp.StatusCode)
	}
	if req.Method == http.MethodHead {
		drain(resp)
		size := resp.Header.Get("Content-Length")
		if cr := resp.Header.Get("Content-Range"); resp.StatusCode == http.StatusPartialContent && cr != "" {
			if i := strings.LastIndex(cr, "/"); i >= 0 {
				size = cr[i+1:]
			}
		}
		return synthesized(req, http.StatusOK, size, resp.Header.Get("Content-Type"), digest, nil), nil
	}
	clean := synthesized(req, resp.StatusCode, resp.Header.Get("Content-Length"), resp.Header.Get("Content-Type"), digest, resp.Body)
	for _, h := range []string{"Content-Range", "Accept-Ranges", "ETag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			clean.Header.Set(h, v)
		}
	}
	clean.ContentLength = resp.ContentLength
	return clean, nil
}

func synthesized(req *http.Request, status int, length, contentType, digest string, body io.ReadCloser) *http.Response {
	h := http.Header{}
	if length != "" {
		h.Set("Content-Length", length)
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h.Set("Content-Type", contentType)
	if digest != "" {
		h.Set("Docker-Content-Digest", digest)
	}
	if body == nil {
		body = http.NoBody
	}
	n, _ := strconv.ParseInt(length, 10, 64)
	if length == "" {
		n = -1
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: n, Request: req}
}

func isRedirect(code int) bool {
	return code == http.StatusMovedPermanently || code == http.StatusFound || code == http.StatusSeeOther ||
		code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// modifyResponse rewrites what names the upstream and hides what must not reach the client.
func (h *Handler) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	// Harbor's challenge never reaches the client: the client authenticated to the proxy.
	resp.Header.Del("Www-Authenticate")
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		upstreamErrors.WithLabelValues("denied").Inc()
		denied(resp, st)
		return nil
	}
	if !st.native {
		rewriteLocation(resp, st)
		rewriteLinks(resp, st)
	}
	resp.Body = &stallReader{r: resp.Body, timeout: h.stall(), cancel: st.cancel}
	return nil
}

// denied replaces the registry's 401/403 with an OCI DENIED error naming the connector: the
// caller's own credential was fine, the connector's account lacks the permission.
func denied(resp *http.Response, st *requestState) {
	drain(resp)
	ref := st.route.Connector.String()
	msg := fmt.Sprintf("the registry refused connector %s's account %s on repository %s (HTTP %d): grant the account the permission on the project, or check the connector's credentials",
		ref, strings.Join(st.scopes, " "), st.route.Repository, resp.StatusCode)
	body, _ := json.Marshal(map[string]any{"errors": []ociError{{Code: codeDenied, Message: msg, Detail: map[string]string{"connector": ref}}}})
	resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
	resp.Header = http.Header{"Content-Type": {"application/json"}}
	if resp.Request.Method == http.MethodHead {
		body = nil
	}
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
}

// errorHandler answers when the registry could not be reached or the transfer broke. A broken
// upload (the client went away mid-body, or the exchange failed) gets its upstream session
// deleted: the client starts a new one anyway, and abandoned sessions otherwise pile up on the
// registry (harbor#20157).
func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	ref := st.route.Connector.String()
	if st.route.Kind == KindUpload && st.route.Rest != "" && (r.Method == http.MethodPatch || r.Method == http.MethodPut) {
		go cancelUpload(st)
	}
	if errors.Is(context.Cause(r.Context()), errStalled) {
		upstreamErrors.WithLabelValues("stalled").Inc()
		writeError(w, codeUnavailable, ref, fmt.Sprintf("the transfer through connector %s stalled: no data moved for %s", ref, h.stall()))
		return
	}
	if rec, ok := w.(*recorder); (ok && rec.body != nil && rec.body.broken) || errors.Is(r.Context().Err(), context.Canceled) {
		upstreamErrors.WithLabelValues("client-gone").Inc()
		return
	}
	upstreamErrors.WithLabelValues("unreachable").Inc()
	writeError(w, codeUnavailable, ref, fmt.Sprintf("the registry of connector %s could not be reached: %v", ref, unwrapURL(err)))
}

// cancelUpload deletes an upstream upload session. The registry authorises DELETE as its own
// action, so it gets a token for exactly that scope; an account without it leaves the session
// to the registry's own purging.
func cancelUpload(st *requestState) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, upstreamURL(st).String(), nil)
	if err != nil {
		return
	}
	auth, _, err := st.registry.Authorization(ctx, policies.ScopesFor(http.MethodDelete, st.route.Repository, ""))
	if err != nil {
		return
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if resp, err := st.registry.Transport().RoundTrip(req); err == nil {
		drain(resp)
	}
}

// unwrapURL drops the URL from a *url.Error: upload URLs carry opaque state that has no place
// in messages.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
