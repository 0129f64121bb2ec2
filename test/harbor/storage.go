package testharbor

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// storage plays the object store a registry redirects blob downloads to: it serves the
// registry's files and, like S3 with a presigned URL, refuses any request that also carries an
// Authorization header ("Only one auth mechanism allowed"), counting them.
type storage struct {
	root        string
	server      *http.Server
	url         string
	authRefused atomic.Int64
	served      atomic.Int64
}

func startStorage(root, host string, tlsCert *tls.Certificate) (*storage, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &storage{root: root}
	scheme := "http"
	if tlsCert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*tlsCert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s.url = scheme + "://" + net.JoinHostPort(host, port)
	s.server = &http.Server{Handler: http.HandlerFunc(s.serve), ErrorLog: serverLog()}
	go func() { _ = s.server.Serve(ln) }()
	return s, nil
}

func (s *storage) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		s.authRefused.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>"))
		return
	}
	p := filepath.Join(s.root, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
	if !strings.HasPrefix(p, s.root) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		http.NotFound(w, r)
		return
	}
	s.served.Add(1)
	http.ServeContent(w, r, "", st.ModTime(), f)
}
