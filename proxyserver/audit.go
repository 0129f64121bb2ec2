package proxyserver

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// recorder wraps a ResponseWriter for one request: it counts status and bytes for the audit line
// and metrics, and extends the connection's write and read deadlines as bytes move, so a stalled
// transfer ends while a slow but moving multi-GB one never does (no whole-request timeout,
// harbor#22393). The listener that answers the request owns it and fills in what the audit line
// names (identity, route, token cache) as it learns them.
type recorder struct {
	http.ResponseWriter
	log     logr.Logger
	stall   time.Duration
	req     *http.Request
	rc      *http.ResponseController
	start   time.Time
	status  int
	written int64
	body    *countingBody
	// What the audit line names.
	route       *Route
	identity    *identity.Identity
	tokenCached *bool
	// For a node listener's pull: "pod" or "node" (README "Per-pod pulls"), and the pod.
	pullIdentity string
	pullingPod   *identity.Identity
}

// notePull records how a node listener's pull is authorised, and for which pod.
func (w *recorder) notePull(how string, pod *identity.Identity) {
	w.pullIdentity, w.pullingPod = how, pod
}

// newRecorder starts a request's audit; finish writes it.
func newRecorder(w http.ResponseWriter, r *http.Request, log logr.Logger, stall time.Duration) *recorder {
	rec := &recorder{ResponseWriter: w, log: log, stall: stall, req: r, rc: http.NewResponseController(w), start: time.Now()}
	if r.Body != nil && r.Body != http.NoBody {
		rec.body = &countingBody{r: r.Body, onRead: rec.extendRead}
		r.Body = rec.body
	}
	return rec
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Flush lets the reverse proxy flush streamed responses.
func (w *recorder) Flush() { _ = w.rc.Flush() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) extendRead() { _ = w.rc.SetReadDeadline(time.Now().Add(w.stall)) }

// finish writes the audit line and metrics. It records identity, connector, repository,
// operation, digest, bytes and status, and never a header value or query string.
func (w *recorder) finish() {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	var up int64
	if w.body != nil {
		up = w.body.n
	}
	op := w.req.Method + " " + w.op()
	requestsTotal.WithLabelValues(op, strconv.Itoa(status)).Inc()
	bytesTotal.WithLabelValues("up").Add(float64(up))
	bytesTotal.WithLabelValues("down").Add(float64(w.written))
	kv := []any{"op", op, "status", status, "bytesUp", up, "bytesDown", w.written, "durationMs", time.Since(w.start).Milliseconds()}
	if w.identity != nil {
		kv = append(kv, "identity", w.identity.String())
		if w.identity.PodName != "" {
			kv = append(kv, "pod", w.identity.PodName)
		}
	}
	if w.pullIdentity != "" {
		kv = append(kv, "pullIdentity", w.pullIdentity, "node", w.identity.NodeName)
		if w.pullingPod != nil {
			kv = append(kv, "pullingPod", w.pullingPod.Namespace+"/"+w.pullingPod.PodName, "pullingServiceAccount", w.pullingPod.String())
		}
	}
	if w.route != nil {
		kv = append(kv, "connector", w.route.Connector.String(), "repository", w.route.Repository)
		if strings.HasPrefix(w.route.Rest, "sha256:") || strings.HasPrefix(w.route.Rest, "sha512:") {
			kv = append(kv, "digest", w.route.Rest)
		} else if w.route.Kind == KindManifest {
			kv = append(kv, "tag", w.route.Rest)
		}
	}
	if w.tokenCached != nil {
		kv = append(kv, "tokenCached", *w.tokenCached)
	}
	w.log.Info("request", kv...)
}

func (w *recorder) op() string {
	if w.route == nil {
		if strings.HasPrefix(w.req.URL.Path, "/v2/_catalog") {
			return "catalog"
		}
		if w.req.URL.Path == "/v2/" || w.req.URL.Path == "/v2" {
			return "base"
		}
		return "invalid"
	}
	return string(w.route.Kind)
}

// countingBody counts request body bytes and reports progress.
type countingBody struct {
	r      io.ReadCloser
	n      int64
	onRead func()
	// broken: the client's body ended with an error (it went away mid-upload).
	broken bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.onRead()
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.broken = true
	}
	return n, err
}

func (b *countingBody) Close() error { return b.r.Close() }
