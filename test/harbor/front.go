package testharbor

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
)

// SessionCookie is the name of Harbor core's session cookie (beego's session, named by Harbor's
// config.SessionCookieName).
const SessionCookie = "sid"

// NginxUpstreamURI returns the request target Harbor's nginx front sends to Harbor's core for a
// client's request target, or ok=false where nginx answers 400 itself. Harbor's nginx proxies
// with a URI (location /api/ { proxy_pass http://core/api/; }, and the same for /c/, /v2/,
// /service/), so nginx does not pass the client's bytes on: it parses the path as
// ngx_http_parse_complex_uri does (merge_slashes on, the default), which
//
//   - decodes every percent-escape, and then treats a decoded '/' as a separator and a decoded
//     '.' as a dot (so %2F splits segments and %2e%2e is a ".." segment), except that a decoded
//     '%' (%25), '#' (%23) or '?' (%3F) is kept as a plain character;
//   - resolves "." and ".." segments (400 when ".." climbs above the root) and merges "//";
//   - ends the path at a literal '?' (the query, passed on unchanged) or '#' (a fragment, dropped
//     with the query after it);
//
// and then, if the path held any percent-escape, re-encodes only control characters, space,
// `"#%<>?\^{|}`, '`', DEL and non-ASCII bytes (ngx_escape_uri's NGX_ESCAPE_URI, upper-case
// hex), so %252F reaches core as %252F while %2F reaches it as '/' and %2e as '.'. Control
// characters and spaces in the request line are refused (400). test/nginx checks this function
// against Debian's nginx. Not imitated: the 301 nginx answers for a location's name without its
// trailing slash (/api, /v2).
func NginxUpstreamURI(target string) (uri string, ok bool) {
	if i := strings.Index(target, "://"); i > 0 && !strings.HasPrefix(target, "/") {
		// absolute-form: nginx uses the path after the authority ("/" when there is none)
		rest := target[i+3:]
		j := strings.IndexAny(rest, "/?#")
		switch {
		case j < 0:
			target = "/"
		case rest[j] == '/':
			target = rest[j:]
		default:
			target = "/" + rest[j:]
		}
	}
	if target == "" || target[0] != '/' {
		return "", false
	}
	for i := 0; i < len(target); i++ {
		if target[i] <= 0x20 || target[i] == 0x7f {
			return "", false
		}
	}
	path, args, quoted, ok := parseComplexURI(target)
	if !ok {
		return "", false
	}
	if quoted {
		path = nginxEscapeURI(path)
	}
	if args != "" {
		return path + "?" + args, true
	}
	return path, true
}

// parseComplexURI is nginx's ngx_http_parse_complex_uri (non-Windows, merge_slashes on): the
// decoded, dot-resolved path, the query (args), and whether the path held a percent-escape.
func parseComplexURI(target string) (path, args string, quoted, ok bool) {
	const (
		usual = iota
		slash
		dot
		dotDot
		quotedFirst
		quotedSecond
	)
	u := make([]byte, 0, len(target))
	// backtrack removes the ".." just written (u ends in "/..") and the segment before it,
	// keeping that segment's leading slash; false when there is none (".." above the root).
	backtrack := func() bool {
		i := len(u) - 4
		for ; i >= 0; i-- {
			if u[i] == '/' {
				u = u[:i+1]
				return true
			}
		}
		return false
	}
	state, quotedState := usual, usual
	var decoded byte
	p := 0
	next := func() (byte, bool) {
		if p >= len(target) {
			return 0, false
		}
		c := target[p]
		p++
		return c, true
	}
	argsFrom := func(start int) string {
		rest := target[start:]
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			rest = rest[:i]
		}
		return rest
	}
	ch, more := next()
	for more {
		switch state {
		case usual, slash, dot, dotDot:
			if isNginxUsual(ch) {
				state = usual
				u = append(u, ch)
				ch, more = next()
				break
			}
			switch ch {
			case '/':
				switch state {
				case dot:
					u = u[:len(u)-1] // "/./" is "/"
				case dotDot:
					if !backtrack() {
						return "", "", quoted, false
					}
				case slash:
					ch, more = next()
					continue // merge_slashes
				default:
					u = append(u, ch)
				}
				state = slash
			case '%':
				quotedState, state = state, quotedFirst
			case '?', '#':
				switch state {
				case dot:
					u = u[:len(u)-1]
				case dotDot:
					if !backtrack() {
						return "", "", quoted, false
					}
				}
				if ch == '?' {
					args = argsFrom(p)
				}
				return string(u), args, quoted, true
			case '.':
				switch state {
				case slash:
					state = dot
				case dot:
					state = dotDot
				default:
					state = usual
				}
				u = append(u, ch)
			default: // '+', NUL and the other bytes nginx's table does not call usual
				state = usual
				u = append(u, ch)
			}
			ch, more = next()
		case quotedFirst:
			quoted = true
			if !isHexDigit(ch) {
				return "", "", quoted, false
			}
			decoded = hexValue(ch)
			state = quotedSecond
			ch, more = next()
		case quotedSecond:
			if !isHexDigit(ch) {
				return "", "", quoted, false
			}
			digit := '0' <= ch && ch <= '9'
			ch = decoded<<4 | hexValue(ch)
			if digit && (ch == '%' || ch == '#') || !digit && ch == '?' {
				state = usual
				u = append(u, ch)
				ch, more = next()
				break
			}
			if digit && ch == 0 {
				return "", "", quoted, false
			}
			state = quotedState // the decoded byte is parsed as if it had been sent as is
		}
	}
	switch state {
	case quotedFirst, quotedSecond:
		return "", "", quoted, false
	case dot:
		u = u[:len(u)-1]
	case dotDot:
		if !backtrack() {
			return "", "", quoted, false
		}
	}
	return string(u), "", quoted, true
}

// isNginxUsual is nginx's "usual" table (non-Windows): every byte but NUL, LF, CR, space, '#',
// '%', '+', '.', '/' and '?'.
func isNginxUsual(c byte) bool {
	return strings.IndexByte("\x00\n\r #%+./?", c) < 0
}

// nginxEscapeURI is ngx_escape_uri(NGX_ESCAPE_URI): control characters, space, `"#%<>?\^{|}`,
// '`', DEL and bytes above 0x7f become %XX with upper-case hex.
func nginxEscapeURI(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\"#%<>?\\^`{|}", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// nginxFront makes the test Harbor's request routing what Harbor's core sees behind its nginx:
// the path is normalised by NginxUpstreamURI before any route is chosen, and a target nginx
// refuses gets nginx's own 400 page.
func nginxFront(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri, ok := NginxUpstreamURI(r.RequestURI)
		var u *url.URL
		if ok {
			var err error
			u, err = url.ParseRequestURI(uri)
			ok = err == nil
		}
		if !ok {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"))
			return
		}
		r.URL = &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
		r.RequestURI = uri
		next.ServeHTTP(w, r)
	})
}

// coreLocations are the nginx locations Harbor's front proxies to core; everything else goes
// to the portal (static files, no session).
var coreLocations = []string{"/api/", "/c/", "/service/", "/v2/"}

// sessions sets Harbor core's session cookie the way beego's session manager does on every
// request core serves (API, token service, login, and the registry requests core relays): a new
// random sid, "Path=/; HttpOnly", unless the request carries a sid this Harbor issued.
func (s *Server) sessions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core := false
		for _, prefix := range coreLocations {
			core = core || strings.HasPrefix(r.URL.Path, prefix)
		}
		if core && !s.knownSession(r) {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			sid := hex.EncodeToString(b)
			s.sessionsMu.Lock()
			s.sessionIDs[sid] = true
			s.sessionsMu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", HttpOnly: true})
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) knownSession(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return false
	}
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	return s.sessionIDs[c.Value]
}

// IssuedSessions returns every session id (the sid cookie's value) this Harbor handed out, so
// tests can check that none reaches a client of the proxy.
func (s *Server) IssuedSessions() []string {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	out := make([]string, 0, len(s.sessionIDs))
	for sid := range s.sessionIDs {
		out = append(out, sid)
	}
	return out
}
