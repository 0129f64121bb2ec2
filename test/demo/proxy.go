package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/testca"
)

// proxyCertificates makes the proxy's CA and serving certificate (cert-manager's job in a
// cluster) and picks its address.
func proxyCertificates(work string) (addr, caFile string, err error) {
	ca, err := testca.New("connectors-proxy demo CA")
	if err != nil {
		return "", "", err
	}
	leaf, err := ca.Issue("127.0.0.1")
	if err != nil {
		return "", "", err
	}
	return writeCertDir(filepath.Join(work, "proxy-tls"), leaf.CertPEM, leaf.KeyPEM, ca.CertPEM)
}

// writeCertDir writes tls.crt, tls.key and ca.crt the way a cert-manager Secret is mounted, and
// picks a free loopback address for the listener that uses them.
func writeCertDir(dir string, cert, key, ca []byte) (addr, caFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", "", err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	defer ln.Close()
	return ln.Addr().String(), filepath.Join(dir, "ca.crt"), nil
}

// pushPull plays an app team's CI: a ServiceAccount token (audience connectors-proxy) in a
// Docker config.json and the proxy's CA are all it has.
func pushPull(ctx context.Context, work string, env *envtest.Environment, ns, proxyAddr, proxyCAFile string, harbor *testharbor.Server) error {
	crane, err := clients.Lookup("crane")
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "builder", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"connectors-proxy"}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	home := filepath.Join(work, "ci")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{proxyAddr: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte("sa:" + tr.Status.Token))}}})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		return err
	}
	run := func(caFile string, args ...string) (string, error) {
		cmd := exec.Command(crane, args...)
		cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "SSL_CERT_FILE=" + caFile}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	layer := filepath.Join(work, "hello.txt")
	if err := os.WriteFile(layer, []byte("hello through the connectors proxy\n"), 0o644); err != nil {
		return err
	}
	tarPath := filepath.Join(work, "layer.tar")
	if out, err := exec.Command("tar", "-C", work, "-cf", tarPath, "hello.txt").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	ref := proxyAddr + "/namespaces/" + ns + "/connectors/harbor/team/app:v1"
	fmt.Printf("    ~/.docker/config.json holds only a ServiceAccount token for %s\n", proxyAddr)
	fmt.Printf("    $ crane append --oci-empty-base -f layer.tar -t %s\n", ref)
	if out, err := run(proxyCAFile, "append", "--oci-empty-base", "-f", tarPath, "-t", ref); err != nil {
		return fmt.Errorf("push through the proxy: %v: %s", err, out)
	}
	digest, err := run(proxyCAFile, "digest", ref)
	if err != nil {
		return fmt.Errorf("pull through the proxy: %v: %s", err, digest)
	}
	fmt.Printf("    $ crane digest %s\n    %s\n", ref, digest)
	out, err := run(proxyCAFile, "export", ref, "-")
	if err != nil || !strings.Contains(out, "hello through the connectors proxy") {
		return fmt.Errorf("pull of the layer through the proxy: %v", err)
	}
	fmt.Println("    $ crane export ... | tar -xO hello.txt\n    hello through the connectors proxy")
	harborCA := filepath.Join(work, "harbor-ca.crt")
	if err := os.WriteFile(harborCA, harbor.CACertPEM(), 0o644); err != nil {
		return err
	}
	direct := harbor.Host() + "/team/app:v1"
	out, err = run(harborCA, "digest", direct)
	if err == nil {
		return fmt.Errorf("the same pull straight from Harbor succeeded without credentials")
	}
	fmt.Printf("    The same pull straight from Harbor, without the proxy, is refused:\n    $ crane digest %s\n    %s\n", direct, lastLine(out))
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
