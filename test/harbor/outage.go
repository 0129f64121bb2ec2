package testharbor

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// outage takes the whole Harbor off the network and back, as when its nginx front or its node
// goes down: while down, its addresses refuse connections and open connections are cut; back
// up, the same addresses serve the same storage and accounts again.
type outage struct {
	mu        sync.Mutex
	down      bool
	listeners []net.Listener
	addrs     []string
	conns     map[net.Conn]struct{}
}

func (o *outage) add(l net.Listener) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listeners = append(o.listeners, l)
	o.addrs = append(o.addrs, l.Addr().String())
}

// track is the http.Server's ConnState hook: it remembers open connections so an outage can
// cut them.
func (o *outage) track(c net.Conn, state http.ConnState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conns == nil {
		o.conns = map[net.Conn]struct{}{}
	}
	switch state {
	case http.StateNew:
		o.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(o.conns, c)
	}
}

// SetDown(true) closes every listener and connection of the Harbor (clients get connection
// refused); SetDown(false) listens on the same addresses again.
func (s *Server) SetDown(down bool) error {
	o := &s.outage
	o.mu.Lock()
	if o.down == down {
		o.mu.Unlock()
		return nil
	}
	o.down = down
	if down {
		var errs []error
		for _, l := range o.listeners {
			errs = append(errs, l.Close())
		}
		for c := range o.conns {
			_ = c.Close()
		}
		o.listeners = nil
		o.mu.Unlock()
		return errors.Join(errs...)
	}
	addrs := o.addrs
	o.addrs = nil
	o.mu.Unlock()
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("test Harbor back on %s: %w", addr, err)
		}
		s.serve(s.withTLS(l))
	}
	return nil
}
