package podindex

import (
	"strings"
	"sync"

	"github.com/alauda/harbor-connector/policies"
)

// maxShared bounds the interner: strings of namespaces, nodes and images that are gone stay in
// it until it is this full, and then it starts over (the pods already held keep their copies).
const maxShared = 1 << 16

// interner keeps one copy of each string that many pods repeat: the namespace, the node, the
// ServiceAccount, the connector annotation and the connectors and repositories of the pulls.
// Decoding gives each pod its own copies, and a repository cut from an image name keeps the
// whole name; shared, those cost a pod nothing (README "Scale").
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

// share returns p with its repeated strings replaced by the shared copies. p must not be in use
// yet (MarkedPods are immutable once indexed).
func (in *interner) share(p *policies.MarkedPod) *policies.MarkedPod {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.m == nil || len(in.m) >= maxShared {
		in.m = make(map[string]string, 1024)
	}
	p.Namespace = in.get(p.Namespace)
	p.ServiceAccount = in.get(p.ServiceAccount)
	p.Node = in.get(p.Node)
	p.ConnectorAnnotation = in.get(p.ConnectorAnnotation)
	for j, c := range p.StatusConnectors {
		p.StatusConnectors[j] = in.get(c)
	}
	for j, pull := range p.Pulls {
		p.Pulls[j] = policies.ConnectorPull{
			Connector:  policies.ConnectorRef{Namespace: in.get(pull.Connector.Namespace), Name: in.get(pull.Connector.Name)},
			Repository: in.get(pull.Repository),
		}
	}
	return p
}

// get returns the shared copy of s (in.mu held). A new string is cloned, so that the copy kept
// is no larger than s itself.
func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	if shared, ok := in.m[s]; ok {
		return shared
	}
	s = strings.Clone(s)
	in.m[s] = s
	return s
}
