// Package proxyserver is the registry proxy: it authenticates the calling workload, checks it may
// use the connector, and forwards the OCI distribution request to the connector's registry with
// the connector's credentials, rewriting everything that names the upstream. Every refusal is an
// OCI error body naming the connector and the reason.
package proxyserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// OCI distribution error codes the proxy answers with.
const (
	codeUnauthorized      = "UNAUTHORIZED"
	codeDenied            = "DENIED"
	codeNameUnknown       = "NAME_UNKNOWN"
	codeNameInvalid       = "NAME_INVALID"
	codeTooManyRequests   = "TOOMANYREQUESTS"
	codeUnsupported       = "UNSUPPORTED"
	codeDigestInvalid     = "DIGEST_INVALID"
	codeManifestInvalid   = "MANIFEST_INVALID"
	codeBlobUploadInvalid = "BLOB_UPLOAD_INVALID"
	codeUnavailable       = "UNAVAILABLE"
)

// statusFor is the HTTP status of each code.
var statusFor = map[string]int{
	codeUnauthorized:      http.StatusUnauthorized,
	codeDenied:            http.StatusForbidden,
	codeNameUnknown:       http.StatusNotFound,
	codeNameInvalid:       http.StatusBadRequest,
	codeTooManyRequests:   http.StatusTooManyRequests,
	codeUnsupported:       http.StatusNotFound,
	codeDigestInvalid:     http.StatusBadRequest,
	codeManifestInvalid:   http.StatusBadRequest,
	codeBlobUploadInvalid: http.StatusBadRequest,
	codeUnavailable:       http.StatusServiceUnavailable,
}

// ociError is the distribution spec's error body.
type ociError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Detail  map[string]string `json:"detail,omitempty"`
}

// writeError answers with an OCI error body. connector ("<ns>/<name>", may be empty) is put in
// the detail and should also be named in message, which must say what to do.
func writeError(w http.ResponseWriter, code, connector, message string) {
	status, ok := statusFor[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	body := struct {
		Errors []ociError `json:"errors"`
	}{Errors: []ociError{{Code: code, Message: message}}}
	if connector != "" {
		body.Errors[0].Detail = map[string]string{"connector": connector}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	if code == codeUnauthorized {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// challenge asks Docker-style clients for the Basic pair from config.json (username anything,
// password a ServiceAccount token).
const challenge = `Basic realm="connectors-proxy"`

// unwrapURL drops the URL from a *url.Error: upload URLs carry opaque state that has no place
// in messages.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
