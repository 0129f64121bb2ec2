package kube

import (
	"io"
	"os"
	"path/filepath"
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
	u, err := admin(env)
	if err != nil {
		return nil, nil, err
	}
	k, err := u.Kubectl()
	if err != nil {
		return nil, nil, err
	}
	return k.Run(args...)
}

// AdminKubeconfig writes a kubeconfig of that cluster admin into dir, for scripts that run
// kubectl themselves (make deploy, make undeploy), and returns its path.
func AdminKubeconfig(env *envtest.Environment, dir string) (string, error) {
	u, err := admin(env)
	if err != nil {
		return "", err
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

func admin(env *envtest.Environment) (*envtest.AuthenticatedUser, error) {
	adminsMu.Lock()
	defer adminsMu.Unlock()
	if u, ok := admins[env]; ok {
		return u, nil
	}
	u, err := env.AddUser(envtest.User{Name: "envtest-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	admins[env] = u
	return u, nil
}
