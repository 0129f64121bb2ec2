package policies

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// What a Pod may point at the node pull host, and what its status annotation may name. Two
// admission checks share these rules: the validating webhook (webhook/validate.go), which
// applies all of them, and the pull-host ValidatingAdmissionPolicy plus the validating
// webhook's matchConditions (config/webhook), whose CEL carries ProxyPathImagePattern and
// PullHostRule.ImagePattern verbatim (test/manifests checks they do, test/admission that the
// API server's CEL answers as this code does for every spelling).

// ProxyPathImagePattern matches an image whose repository path, under any host, has the proxy's
// shape: <host>/namespaces/<ns>/connectors/<name>/<repo>. The node pull listener routes on that
// shape alone and a host can be spelt in more ways than any list holds (a DNS name resolving to
// 127.0.0.1, an /etc/hosts entry, a numeric form), so the shape decides, whatever the host.
// Case is ignored (a runtime refuses upper-case repositories, the check does not depend on it).
const ProxyPathImagePattern = `(?i)^[^/]+/namespaces/[^/]+/connectors/[^/]+/`

// loopbackHostPattern matches a host, without its port, that reaches the node itself:
//   - localhost and every *.localhost name (RFC 6761);
//   - IPv4 literals of 127.0.0.0/8 and 0.0.0.0/8 (connecting to 0.0.0.0 reaches the local host
//     on Linux) in every form inet_aton accepts: 2 to 4 dotted parts, each decimal, octal
//     (leading 0) or hex (0x), the first part being the top byte; or one 32-bit number in
//     decimal (2130706432-2147483647, or zero), octal or hex;
//   - IPv6 ::1 and :: in any spelling, and the IPv4-mapped (::ffff:a.b.c.d) and -compatible
//     (::a.b.c.d) forms of those IPv4 ranges, written in hex as image references must.
//
// It may match a few addresses no registry uses (other 0.0.0.0/8 and ::a.b.c.d forms); it must
// not miss one that reaches the node.
const loopbackHostPattern = `(?:` +
	`(?:[a-z0-9-]+\.)*localhost` +
	`|(?:127|0+177|0x0*7f|0+|0x0*)(?:\.(?:0x[0-9a-f]*|[0-9]+)){1,3}` +
	`|2130706(?:4(?:3[2-9]|[4-9][0-9])|[5-9][0-9]{2})|213070[7-9][0-9]{3}|21307[1-9][0-9]{4}|2130[89][0-9]{5}` +
	`|213[1-9][0-9]{6}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}` +
	`|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7]` +
	`|0+|0+177[0-7]{8}|0x0*7f[0-9a-f]{6}|0x0*` +
	`|\[(?:[0:]*:0*1|[0:]+|[0:]*(?::0*ffff)?:(?:0*7f[0-9a-f]{2}|0*[0-9a-f]{1,2}):[0-9a-f]{1,4})\]` +
	`)`

var proxyPathImage = regexp.MustCompile(ProxyPathImagePattern)

// PullHostRule decides which images aim at the node pull host: NewPullHostRule builds it for
// the manager's --pull-host.
type PullHostRule struct {
	pullHost string
	pattern  string
	re       *regexp.Regexp
}

// NewPullHostRule builds the rule for a pull host (host[:port], as --pull-host takes it).
func NewPullHostRule(pullHost string) (*PullHostRule, error) {
	if pullHost == "" || strings.ContainsAny(pullHost, "/ ") {
		return nil, fmt.Errorf("pull host %q: want host[:port]", pullHost)
	}
	port := "" // a pull host without a port: loopback spellings without one
	if _, p, err := net.SplitHostPort(pullHost); err == nil {
		port = ":" + p
	}
	pattern := `(?i)^(?:` + regexp.QuoteMeta(pullHost) + `|` + loopbackHostPattern + regexp.QuoteMeta(port) + `)/`
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return &PullHostRule{pullHost: pullHost, pattern: pattern, re: re}, nil
}

// ImagePattern matches an image whose host is the pull host (case-insensitively) or any
// loopback spelling at the pull host's port: the text the admission policy's CEL carries.
func (r *PullHostRule) ImagePattern() string { return r.pattern }

// AimsAtPullHost reports whether an image is meant for the node pull listener: its path has the
// proxy shape (under any host), or its host is a spelling of the pull host.
func (r *PullHostRule) AimsAtPullHost(image string) bool {
	return proxyPathImage.MatchString(image) || r.re.MatchString(image)
}

// CheckImage applies the rule for one image of a Pod whose status annotation names the
// connectors in named (nil when the Pod has no status annotation): an image aimed at the pull
// host must be exactly <pull-host>/namespaces/<ns>/connectors/<name>/<repo> for one of them.
// It returns the connector such an image uses (ok false for images not aimed at the pull
// host), or an error naming what is wrong and what to do.
func (r *PullHostRule) CheckImage(image string, named []ConnectorRef, hasStatus bool) (ref ConnectorRef, ok bool, err error) {
	if !r.AimsAtPullHost(image) {
		return ConnectorRef{}, false, nil
	}
	if !hasStatus {
		return ConnectorRef{}, true, fmt.Errorf("image %s points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook: use the registry's own image name and add the annotation %s: <connector>",
			image, AnnotationConnector)
	}
	host, path, _ := strings.Cut(image, "/")
	ref, _, shaped := ParseProxyPath(path)
	switch {
	case !strings.EqualFold(host, r.pullHost):
		return ref, true, fmt.Errorf("image %s points at the connectors pull host under another name (%s); the webhook writes %s/namespaces/<ns>/connectors/<name>/<repo>: use the registry's own image name and name the connector in annotation %s",
			image, host, r.pullHost, AnnotationConnector)
	case !shaped || !validRef(ref):
		return ref, true, fmt.Errorf("image %s points at the connectors pull host but not at a connector's path %s/namespaces/<ns>/connectors/<name>/<repo>: use the registry's own image name and name the connector in annotation %s",
			image, r.pullHost, AnnotationConnector)
	}
	for _, n := range named {
		if n == ref {
			return ref, true, nil
		}
	}
	return ref, true, fmt.Errorf("image %s points at connector %s through the pull host, but the pod's annotation %s does not name that connector: use the registry's own image name and name the connector in annotation %s",
		image, ref, AnnotationStatus, AnnotationConnector)
}

// ParseStatus reads AnnotationStatus strictly, as the webhook writes it: JSON with known fields
// only, and every connector as "<namespace>/<name>". The error names what is wrong.
func ParseStatus(raw string) (Status, []ConnectorRef, error) {
	var s Status
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Status{}, nil, fmt.Errorf("annotation %s is not the JSON the connectors webhook writes (%v)", AnnotationStatus, err)
	}
	if dec.More() {
		return Status{}, nil, fmt.Errorf("annotation %s is not the JSON the connectors webhook writes (trailing data)", AnnotationStatus)
	}
	refs := make([]ConnectorRef, 0, len(s.Connectors))
	for _, c := range s.Connectors {
		ns, name, found := strings.Cut(c, "/")
		ref := ConnectorRef{Namespace: ns, Name: name}
		if !found || !validRef(ref) {
			return Status{}, nil, fmt.Errorf("annotation %s names connector %q, which is not <namespace>/<name>", AnnotationStatus, c)
		}
		refs = append(refs, ref)
	}
	return s, refs, nil
}

// validRef: both parts are what ParseConnectorAnnotation accepts (DNS-1123 labels).
func validRef(ref ConnectorRef) bool {
	refs, err := ParseConnectorAnnotation(ref.String(), ref.Namespace)
	return err == nil && len(refs) == 1 && refs[0] == ref
}
