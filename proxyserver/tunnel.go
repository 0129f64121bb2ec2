package proxyserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/alauda/harbor-connector/policies"
)

// Tunnels: CONNECTs to hosts that are not a connector's registry are relayed byte for byte,
// without credentials and without interception, only to addresses the tunnel policy allows.

// tunnelTarget is a checked CONNECT target: the address to dial.
type tunnelTarget struct {
	addr string
}

// checkTunnel resolves host and applies the tunnel policy to every address it has; resolve nil
// uses net.DefaultResolver.
func checkTunnel(ctx context.Context, policy policies.TunnelPolicy, resolve func(context.Context, string) ([]net.IP, error), host, port string) (tunnelTarget, error) {
	ips, err := resolveHost(ctx, resolve, host)
	if err == nil {
		err = policy.CheckTunnel(host, ips)
	}
	if err != nil {
		return tunnelTarget{}, err
	}
	// The checked address is the one dialled: no second lookup can answer differently.
	return tunnelTarget{addr: net.JoinHostPort(ips[0].String(), port)}, nil
}

func resolveHost(ctx context.Context, resolve func(context.Context, string) ([]net.IP, error), host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	if resolve != nil {
		return resolve(ctx, host)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.IP)
	}
	return out, nil
}

// dialTunnel connects to a checked target with dial (Forward.DialTunnel, which NewForward sets).
func dialTunnel(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), target tunnelTarget) (net.Conn, error) {
	if dial == nil {
		// The one guard left: a nil dialer (a Forward not built by NewForward) would panic.
		dial = (&net.Dialer{Timeout: DefaultOptions().Forward.TunnelDialTimeout}).DialContext
	}
	conn, err := dial(ctx, "tcp", target.addr)
	if err != nil {
		return nil, fmt.Errorf("dialling: %w", err)
	}
	return conn, nil
}

// splice answers the CONNECT and copies bytes both ways until both sides are done.
func splice(w http.ResponseWriter, upstreamConn net.Conn) {
	defer upstreamConn.Close()
	conn, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(upstreamConn, conn); closeWrite(upstreamConn) }()
	go func() { defer wg.Done(); _, _ = io.Copy(conn, upstreamConn); closeWrite(conn) }()
	wg.Wait()
}

// hijack takes the client connection over after answering the CONNECT; bytes the server had
// already read past the request (a client that did not wait for the answer) are replayed.
func hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	if brw != nil && brw.Reader.Buffered() > 0 {
		buffered := io.LimitReader(brw.Reader, int64(brw.Reader.Buffered()))
		return &prefixedConn{Conn: conn, r: io.MultiReader(buffered, conn)}, nil
	}
	return conn, nil
}

// prefixedConn replays bytes the HTTP server had already buffered before the hijack.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
