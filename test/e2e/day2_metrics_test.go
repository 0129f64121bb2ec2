//go:build e2e && day2

package e2e_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// managerMetrics scrapes every manager replica's /metrics as Prometheus does with the install's
// ServiceMonitor: a ServiceAccount token bound to connectors-metrics-reader, the endpoints'
// self-signed certificates not verified (config/prometheus/monitor.yaml says why). The
// alerting rules read what this returns.
func managerMetrics(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	c := w.node.Client
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e-scraper"}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "connectors-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}},
	}
	if err := c.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	tok, err := w.node.Clientset.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	require.NoError(t, err)
	var pods corev1.PodList
	require.NoError(t, c.List(ctx, &pods, client.InNamespace(productNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-manager"}))
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the ServiceMonitor: self-signed metrics certificates
	var all strings.Builder
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(p.Status.PodIP, "8443")+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok.Status.Token)
		resp, err := httpc.Do(req)
		require.NoError(t, err, "scraping %s", p.Name)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "scraping %s: %s", p.Name, body)
		all.Write(body)
	}
	return all.String()
}
