package proxyserver

import "sync"

// Limiter caps concurrent streams per caller identity and per connector, so one tenant cannot
// starve the others. Zero means unlimited.
type Limiter struct {
	PerIdentity  int
	PerConnector int

	mu          sync.Mutex
	byIdentity  map[string]int
	byConnector map[string]int
}

// Acquire takes a slot for both; ok is false (and nothing is held) when either is full.
func (l *Limiter) Acquire(identity, connector string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIdentity == nil {
		l.byIdentity, l.byConnector = map[string]int{}, map[string]int{}
	}
	if (l.PerIdentity > 0 && l.byIdentity[identity] >= l.PerIdentity) ||
		(l.PerConnector > 0 && l.byConnector[connector] >= l.PerConnector) {
		return nil, false
	}
	l.byIdentity[identity]++
	l.byConnector[connector]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			decrement(l.byIdentity, identity)
			decrement(l.byConnector, connector)
		})
	}, true
}

func decrement(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}
