package proxyserver

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Storage redirects: registries backed by object storage answer blob GETs with a redirect to a
// signed URL. The relay follows it itself (so the client needs no route to the store), without
// the registry credential, unless the connector passes redirects through.

// followStorage fetches an object-storage redirect itself, with a fresh request carrying only
// Range, If-Range and Accept (never the registry credential: S3 rejects requests that carry
// Authorization besides a signed URL, moby#50065), and answers as if the registry had. A HEAD is
// answered from the redirect's own headers when they say enough, else from a one-byte ranged GET
// (object stores often refuse HEAD on GET-signed URLs).
func followStorage(req *http.Request, redirect *http.Response, loc *url.URL, call *upstreamCall) (*http.Response, error) {
	drain(redirect)
	digest := redirect.Header.Get("Docker-Content-Digest")
	if digest == "" && call.route.Kind == KindBlob {
		digest = call.route.Rest
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
	resp, err := call.registry.Storage().Do(out)
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
