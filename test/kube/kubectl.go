package kube

import (
	"io"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var (
	adminsMu sync.Mutex
	admins   = map[*envtest.Environment]*envtest.AuthenticatedUser{}
)

// Kubectl runs the test bed's kubectl against env as a cluster admin: a system:masters user
// added once per environment (envtest's ControlPlane.KubeCtl, which did the same, is
// deprecated in favour of AddUser).
func Kubectl(env *envtest.Environment, args ...string) (stdout, stderr io.Reader, err error) {
	adminsMu.Lock()
	u, ok := admins[env]
	if !ok {
		u, err = env.AddUser(envtest.User{Name: "envtest-admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			adminsMu.Unlock()
			return nil, nil, err
		}
		admins[env] = u
	}
	adminsMu.Unlock()
	k, err := u.Kubectl()
	if err != nil {
		return nil, nil, err
	}
	return k.Run(args...)
}
