// Package harborapi is a small client of Harbor 2.x's published REST API (api/v2.0/swagger.yaml
// in goharbor/harbor), made to run in a pod behind the connectors forward proxy: it holds no
// credential (the proxy adds the connector's), reaches Harbor through HTTPS_PROXY and trusts the
// system roots (SSL_CERT_DIR holds the proxy's interception CA). Besides the reads a build job
// needs it sends "must not" probes, requests the proxy has to refuse (Run, probes.go).
package harborapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultPageSize is small so that even a handful of projects or artifacts takes several pages
// and the Link header is followed.
const DefaultPageSize = 2

// maxBody bounds what is read of any answer.
const maxBody = 16 << 20

// Client calls one Harbor's API.
type Client struct {
	base     *url.URL
	http     *http.Client
	PageSize int
}

// DefaultTransport is Go's default (HTTPS_PROXY/NO_PROXY from the environment, the system
// roots, which SSL_CERT_FILE or SSL_CERT_DIR extend: all a pod behind the forward proxy needs),
// with a bound on waiting for an answer's headers.
func DefaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return t
}

// New returns a client of the Harbor at base (its original URL, https://host[:port]); rt nil
// means DefaultTransport. Tests pass their own (trust, injected credentials, a proxy).
func New(base string, rt http.RoundTripper) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("harbor URL %q: want https://host[:port]", base)
	}
	if rt == nil {
		rt = DefaultTransport()
	}
	// Redirects are not followed: Harbor's API does not redirect, and a redirect elsewhere is
	// worth seeing as an error rather than silently obeying.
	hc := &http.Client{Transport: rt, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return &Client{base: u, http: hc, PageSize: DefaultPageSize}, nil
}

// APIError is an answer other than the expected status, with Harbor's (or the proxy's OCI)
// error body {"errors":[{"code","message","detail"}]} when there is one.
type APIError struct {
	Method, Path string
	Status       int
	Code         string
	Message      string
	// Connector is detail.connector: set only by the connectors proxy, never by Harbor, so it
	// tells who refused.
	Connector string
	Body      string // the body, when it is not an error body
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s %s: status %d %s: %s", e.Method, e.Path, e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%s %s: status %d: %.200q", e.Method, e.Path, e.Status, e.Body)
}

// parseError reads an error body into an APIError.
func parseError(method, path string, status int, body []byte) *APIError {
	e := &APIError{Method: method, Path: path, Status: status}
	var b struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &b) != nil || len(b.Errors) == 0 {
		e.Body = string(body)
		return e
	}
	e.Code, e.Message = b.Errors[0].Code, b.Errors[0].Message
	var detail struct {
		Connector string `json:"connector"`
	}
	if json.Unmarshal(b.Errors[0].Detail, &detail) == nil { // detail is free-form in OCI
		e.Connector = detail.Connector
	}
	return e
}

// resolve makes an absolute URL from an escaped path and query, refusing one that leaves the
// Harbor (a Link header is only ever followed on the same origin).
func (c *Client) resolve(ref string) (*url.URL, error) {
	rel, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	u := c.base.ResolveReference(rel)
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return nil, fmt.Errorf("%s is not on %s", u, c.base)
	}
	return u, nil
}

// do sends a request to ref (escaped path and query) and returns the answer with its body read;
// a status other than want is an *APIError.
func (c *Client) do(ctx context.Context, method, ref string, body io.Reader, want int, header http.Header) (*http.Response, []byte, error) {
	u, err := c.resolve(ref)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "harbor-api-client")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, u.EscapedPath(), err)
	}
	if resp.StatusCode != want {
		return resp, b, parseError(method, u.EscapedPath(), resp.StatusCode, b)
	}
	return resp, b, nil
}

// getJSON GETs ref and decodes a 200's body into v.
func (c *Client) getJSON(ctx context.Context, ref string, v any, header http.Header) (*http.Response, error) {
	resp, b, err := c.do(ctx, http.MethodGet, ref, nil, http.StatusOK, header)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return resp, fmt.Errorf("GET %s: decoding the answer: %w", ref, err)
	}
	return resp, nil
}
