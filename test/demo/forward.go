package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/testca"
)

// interceptionCA makes the interception CA (cert-manager's isCA Certificate in a cluster) and
// picks the forward listener's address.
func interceptionCA(work string) (addr, caFile string, err error) {
	ca, err := testca.New("connectors interception demo CA")
	if err != nil {
		return "", "", err
	}
	return writeCertDir(filepath.Join(work, "intercept-ca"), ca.CertPEM, ca.KeyPEM(), ca.CertPEM)
}

// forwardPushPull pushes and pulls with the Harbor image name unchanged: HTTPS_PROXY carries
// <ns>%2F<connector> and a ServiceAccount token, the interception CA is the only extra trust.
func forwardPushPull(ctx context.Context, work string, env *envtest.Environment, k8s client.Client, kubectl func(...string), ns, hostName string, harbor *testharbor.Server, forwardAddr, caFile, credentialsNS, password string) error {
	_, port, _ := net.SplitHostPort(harbor.Host())
	registry := net.JoinHostPort(hostName, port)
	const name = "harbor-by-name"
	fmt.Printf("    Build tools keep Harbor's own image names and reach Harbor through HTTPS_PROXY. They never\n"+
		"    proxy loopback addresses such as %s, so here the test Harbor goes by %s\n"+
		"    (this machine's host name, which resolves to loopback), in place of a real Harbor's DNS name.\n"+
		"    A Connector's address is the name image references use, so the platform admin adds a second\n"+
		"    Connector, %s/%s: address https://%s, the same robot Secret and CA, and the\n"+
		"    annotation %s=%s, the test Harbor's configured external name,\n"+
		"    so the proxy asks Harbor's token service there (https://%s/service/token). Without it\n"+
		"    the proxy would ask /service/token on the connector's own origin, which the test Harbor serves too.\n",
		harbor.Host(), registry, ns, name, registry, policies.AnnotationTokenRealmHost, harbor.Host(), harbor.Host())
	// A Connector whose address is the name build tools use in image references. For class
	// harbor the proxy computes the token realm (/service/token) rather than reading a challenge:
	// on the connector's origin, or on the host the annotation names, here the address the test
	// Harbor is configured with (127.0.0.1:<port>), as a real Harbor's external URL would be.
	c := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Annotations: map[string]string{policies.AnnotationTokenRealmHost: harbor.Host()}},
		Spec: v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: "https://" + registry,
			Auth:            &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "harbor-robot"}},
			CACertSecretRef: &v1alpha1.LocalSecretReference{Name: "harbor-ca"}},
	}
	if err := k8s.Create(ctx, c); err != nil {
		return err
	}
	if err := waitCondition(ctx, k8s, c, v1alpha1.ConditionAuthReady, metav1.ConditionTrue); err != nil {
		return err
	}
	kubectl("get", "connector", name, "-n", ns)
	// The proxy reads this Connector's credentials from the manager's copy: wait for it.
	if _, err := waitMirror(ctx, k8s, credentialsNS, c, password); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "builder", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"connectors-proxy"}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	crane, err := clients.Lookup("crane")
	if err != nil {
		return err
	}
	home := filepath.Join(work, "ci-forward")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	proxyURL := "http://" + url.PathEscape(ns+"/"+c.Name) + ":" + tr.Status.Token + "@" + forwardAddr
	run := func(args ...string) (string, error) {
		cmd := exec.Command(crane, args...)
		cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "HTTPS_PROXY=" + proxyURL, "SSL_CERT_FILE=" + caFile}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	ref := registry + "/team/app:forward"
	fmt.Printf("    HTTPS_PROXY=http://%s%%2F%s:<ServiceAccount token>@%s, SSL_CERT_FILE=<interception CA>\n", ns, c.Name, forwardAddr)
	fmt.Printf("    $ crane append --oci-empty-base -f layer.tar -t %s\n", ref)
	if out, err := run("append", "--oci-empty-base", "-f", filepath.Join(work, "layer.tar"), "-t", ref); err != nil {
		return fmt.Errorf("push through the forward proxy: %v: %s", err, out)
	}
	digest, err := run("digest", ref)
	if err != nil {
		return fmt.Errorf("pull through the forward proxy: %v: %s", err, digest)
	}
	fmt.Printf("    $ crane digest %s\n    %s\n", ref, digest)
	fmt.Println("    (no Harbor credential on the client; the image name is Harbor's own)")
	return nil
}
