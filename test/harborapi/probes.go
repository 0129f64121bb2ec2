package harborapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Probe is a request the connectors proxy must refuse: relayed with the connector's credentials,
// it would hand the pod a credential or a session that outlives it.
type Probe struct {
	Method string
	Path   string // escaped, with its query
	Body   string
}

// robotProbeBody asks for a robot with no permissions, which Harbor rejects (400) even from an
// admin: if a proxy wrongly relays the probe, it is seen (ALLOWED) without a robot being made.
const robotProbeBody = `{"name":"harbor-api-client-probe","level":"system","duration":1,"permissions":[]}`

// MustNotProbes are the requests to send for a project's repository: create a robot account,
// read the current user (its CLI secret lives there), and Harbor's registry token service.
func MustNotProbes(project, repository string) []Probe {
	scope := "repository:" + project + "/" + repository + ":pull,push"
	return []Probe{
		{Method: http.MethodPost, Path: apiRoot + "/robots", Body: robotProbeBody},
		{Method: http.MethodGet, Path: apiRoot + "/users/current"},
		{Method: http.MethodGet, Path: "/service/token?" + url.Values{"service": {"harbor-registry"}, "scope": {scope}}.Encode()},
	}
}

// ProbeResult is how a probe was answered.
type ProbeResult struct {
	Probe
	// Refused: 403 with an error body from the connectors proxy (detail.connector). A 403 from
	// Harbor itself does not count: the request was relayed, and only the account's lack of
	// rights stopped it.
	Refused   bool
	Status    int
	Code      string
	Message   string
	Connector string
	Err       error // no answer, or an unreadable one
}

// Send sends the probe; a 2xx answer is not an error, only not refused.
func (c *Client) Send(ctx context.Context, p Probe) ProbeResult {
	r := ProbeResult{Probe: p}
	var header http.Header
	if p.Body != "" {
		header = http.Header{"Content-Type": {"application/json"}}
	}
	// want 0: every status comes back as an *APIError, with the error body parsed if present.
	_, _, err := c.do(ctx, p.Method, p.Path, strings.NewReader(p.Body), 0, header)
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		r.Err = err
		return r
	}
	r.Status, r.Code, r.Message, r.Connector = apiErr.Status, apiErr.Code, apiErr.Message, apiErr.Connector
	r.Refused = r.Status == http.StatusForbidden && r.Code != "" && r.Connector != ""
	return r
}
