package policies

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNonCanonicalPath is wrapped by every refusal of CanonicalPath, so a listener can answer
// 400 for errors.Is(err, ErrNonCanonicalPath) and show the error's own message.
var ErrNonCanonicalPath = errors.New("request path is not in canonical form")

// CanonicalPath checks a request path as it arrived, still percent-encoded (the request
// target up to '?': r.URL.EscapedPath(), or r.RequestURI's path), and returns it unchanged if
// it is in canonical form. The caller must send upstream exactly the returned string (as the
// outgoing URL's RawPath, with Path its once-unescaped form), so what was checked is what
// Harbor's front sees.
//
// Harbor's nginx (proxy_pass with a URI) decodes percent-escapes, resolves "." and ".." and
// merges "//" before routing, so any path it would rewrite could reach another endpoint than
// the one the proxy checked (GET /api/v2.0/../../service/token reaches the token service). A
// canonical path is one nginx forwards byte for byte:
//
//   - it starts with "/", has no empty segment ("//") except a trailing "/", and no "." or ".."
//     segment;
//   - it holds only RFC 3986 path characters (unreserved, sub-delims but ';', ':', '@'): no
//     ';' (a path parameter to servlet-style fronts, where "..;" is ".."), no backslash,
//     no control, space or non-ASCII byte, none of `"<>[]^{|}` or '`', no '?' or '#';
//   - it holds no percent-escape, with one exception: Harbor's API writes nested repository
//     names twice encoded in its {repository_name} segment
//     (/api/v2.0/projects/{project_name}/repositories/a%252Fb/...), so there, and only there,
//     "%252F" (or "%252f") is allowed; the repository name it encodes must itself have no
//     empty, "." or ".." component.
//
// Registry paths (/v2/...) and Harbor API paths never need anything else: repository names,
// tags, digests ("sha256:..."), project names and label ids are all plain path characters.
func CanonicalPath(rawPath string) (string, error) {
	if rawPath == "" {
		return "", refuse("request path is empty: send a path starting with /")
	}
	if rawPath[0] != '/' {
		return "", refuse("request path %q does not start with /: send an origin-form path", clip(rawPath))
	}
	segments := strings.Split(rawPath[1:], "/")
	repositorySegment := harborRepositorySegment(segments)
	for i, seg := range segments {
		switch {
		case seg == "" && i == len(segments)-1:
			continue // "/" itself, or a trailing slash (GET /v2/)
		case seg == "":
			return "", refuse("request path contains an empty segment (//): send the canonical path, with single slashes")
		case seg == "." || seg == "..":
			return "", refuse("request path contains a dot segment (%q): send the canonical path, with . and .. resolved", seg)
		}
		if err := checkSegment(seg, i == repositorySegment); err != nil {
			return "", err
		}
	}
	return rawPath, nil
}

// harborRepositorySegment is the index (in segments, the path split at "/" after the leading
// one) of Harbor's {repository_name} segment, or -1 when the path is not under
// /api/v2.0/projects/{project_name}/repositories/.
func harborRepositorySegment(segments []string) int {
	if len(segments) > 5 && segments[0] == "api" && segments[1] == "v2.0" && segments[2] == "projects" && segments[4] == "repositories" {
		return 5
	}
	return -1
}

// checkSegment checks one path segment, byte by byte.
func checkSegment(seg string, harborRepository bool) error {
	for j := 0; j < len(seg); j++ {
		c := seg[j]
		if c != '%' {
			if err := checkLiteral(c); err != nil {
				return err
			}
			continue
		}
		if j+2 >= len(seg) || !isHex(seg[j+1]) || !isHex(seg[j+2]) {
			return refuse("request path contains an invalid percent-escape (%q): send the canonical path", clip(seg[j:]))
		}
		escape := seg[j : j+3]
		decoded := unhex(seg[j+1])<<4 | unhex(seg[j+2])
		if decoded == '%' && harborRepository && j+5 <= len(seg) && strings.EqualFold(seg[j+3:j+5], "2F") {
			j += 4 // %252F: Harbor's twice-encoded "/" in a nested repository name
			continue
		}
		if err := checkEscape(escape, decoded, harborRepository); err != nil {
			return err
		}
	}
	if harborRepository {
		return checkHarborRepositoryName(seg)
	}
	return nil
}

// checkLiteral refuses a byte that a canonical path never holds unencoded.
func checkLiteral(c byte) error {
	switch {
	case c == ';':
		// Harbor's nginx passes it on, but a servlet-style front (some gateways and ingress
		// controllers) strips ";..." from a segment before routing, which makes "..;" a dot
		// segment; no registry or Harbor API path holds one.
		return refuse("request path contains ';' (a path parameter, which some fronts strip before routing): registry and Harbor API paths hold none")
	case isPathChar(c):
		return nil
	case c == '\\':
		return refuse("request path contains a backslash: send the canonical path, with / as the only separator")
	case c < 0x20 || c == 0x7f:
		return refuse("request path contains a control character (0x%02X): send the canonical path", c)
	case c >= 0x80:
		return refuse("request path contains a non-ASCII byte (0x%02X): registry and Harbor API paths are ASCII", c)
	case c == '?' || c == '#':
		return refuse("request path contains %q: pass the path without its query or fragment", string(c))
	default:
		return refuse("request path contains %q, which is not a path character: send the canonical path", string(c))
	}
}

// checkEscape refuses a percent-escape (every one is refused; the message says why and what to
// send instead). %252F in Harbor's repository segment never reaches it.
func checkEscape(escape string, decoded byte, harborRepository bool) error {
	switch {
	case decoded == '.':
		return refuse("request path contains a percent-encoded '.' (%s), which Harbor's front decodes into a dot segment: send the canonical path, with . and .. resolved and dots unencoded", escape)
	case decoded == '/':
		return refuse("request path contains a percent-encoded '/' (%s), which Harbor's front decodes into a separator: send the canonical path (nested repository names in Harbor's API are written a%%252Fb)", escape)
	case decoded == '\\':
		return refuse("request path contains a percent-encoded backslash (%s): send the canonical path, with / as the only separator", escape)
	case decoded == '%' && harborRepository:
		return refuse("request path contains a double-encoding (%s) that is not %%252F: Harbor's {repository_name} segment allows only %%252F, the twice-encoded / of a nested repository name", escape)
	case decoded == '%':
		return refuse("request path contains a double-encoding (%s): only Harbor's {repository_name} segment (/api/v2.0/projects/{project_name}/repositories/a%%252Fb) may hold one, as %%252F; send the canonical path", escape)
	case decoded < 0x20 || decoded == 0x7f:
		return refuse("request path contains a percent-encoded control character (%s): send the canonical path", escape)
	case isPathChar(decoded):
		return refuse("request path percent-encodes %q (%s), which a path carries unencoded: send %q instead", string(rune(decoded)), escape, string(rune(decoded)))
	default:
		return refuse("request path contains a percent-encoded byte (%s) that no registry or Harbor API path holds: send the canonical path", escape)
	}
}

// checkHarborRepositoryName checks the repository name a {repository_name} segment encodes
// (a%252Fb is a/b): each of its components must be non-empty and not "." or "..", so Harbor's
// own second decoding cannot produce a path-like name either.
func checkHarborRepositoryName(seg string) error {
	name := strings.ReplaceAll(strings.ReplaceAll(seg, "%252F", "/"), "%252f", "/")
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return refuse("Harbor repository name %q (in the {repository_name} segment) has an empty, . or .. component: send the repository's own name, with each / written %%252F", name)
		}
	}
	return nil
}

// isPathChar reports whether c may appear unencoded in a canonical path segment: RFC 3986's
// pchar without pct-encoded (unreserved / sub-delims / ":" / "@").
func isPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// clip shortens what an error quotes, so a long hostile path does not fill a log line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// nonCanonicalPath is a refusal: its message says what is wrong and what to send; it matches
// ErrNonCanonicalPath.
type nonCanonicalPath struct{ msg string }

func (e *nonCanonicalPath) Error() string        { return e.msg }
func (e *nonCanonicalPath) Is(target error) bool { return target == ErrNonCanonicalPath }

func refuse(format string, args ...any) error {
	return &nonCanonicalPath{msg: fmt.Sprintf(format, args...)}
}
