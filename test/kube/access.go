package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// Users CheckConnectorAccess binds to Kubernetes' built-in user-facing ClusterRoles, in the
// namespace it creates.
const (
	AccessAdmin  = "connectors-access-admin"  // bound to admin
	AccessEditor = "connectors-access-editor" // bound to edit
	AccessViewer = "connectors-access-viewer" // bound to view
)

// CheckConnectorAccess checks, with real requests that impersonate users, what the built-in
// ClusterRoles admin, edit and view allow on Connectors once the install's aggregated
// ClusterRoles (config/rbac/aggregate_roles.yaml) are in them. In a namespace it creates, a user
// bound to edit and one bound to admin create, update, patch and delete Connectors; a user bound
// to view gets and lists them but cannot create, update or delete them; none of them can write
// the status subresource; and the editor can do nothing with Connectors in a second namespace
// where it has no binding. cfg must be allowed to impersonate and to create namespaces and
// RoleBindings (a cluster admin). It returns every difference, and removes what it created.
//
// On a real cluster kube-controller-manager's clusterrole-aggregation controller fills the
// built-in roles; this waits up to a minute for it. envtest runs no controller manager: call
// AggregateClusterRoles first.
func CheckConnectorAccess(ctx context.Context, cfg *rest.Config) error {
	admin, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return err
	}
	var namespaces []string
	defer func() {
		for _, ns := range namespaces {
			_ = admin.Delete(context.WithoutCancel(ctx), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
	}()
	newNamespace := func() (string, error) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "connectors-access-"}}
		if err := admin.Create(ctx, ns); err != nil {
			return "", err
		}
		namespaces = append(namespaces, ns.Name)
		return ns.Name, nil
	}
	home, err := newNamespace()
	if err != nil {
		return err
	}
	other, err := newNamespace()
	if err != nil {
		return err
	}
	for user, role := range map[string]string{AccessAdmin: "admin", AccessEditor: "edit", AccessViewer: "view"} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}
		if err := admin.Create(ctx, rb); err != nil {
			return err
		}
	}
	// The aggregation is asynchronous on a real cluster: wait until the API server's authorizer
	// gives each role what it will be checked for.
	aggregated := []authorizationv1.SubjectAccessReviewSpec{
		{User: AccessEditor, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: home, Verb: "create", Group: v1alpha1.GroupVersion.Group, Resource: "connectors"}},
		{User: AccessAdmin, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: home, Verb: "create", Group: v1alpha1.GroupVersion.Group, Resource: "connectors"}},
		{User: AccessViewer, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: home, Verb: "list", Group: v1alpha1.GroupVersion.Group, Resource: "connectors"}},
	}
	deadline := time.Now().Add(time.Minute)
	for len(aggregated) > 0 {
		sar := &authorizationv1.SubjectAccessReview{Spec: aggregated[0]}
		if err := admin.Create(ctx, sar); err != nil {
			return err
		}
		if sar.Status.Allowed {
			aggregated = aggregated[1:]
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after a minute the built-in ClusterRoles still do not let %s %s connectors in %s: are the install's aggregated ClusterRoles applied, and does kube-controller-manager's clusterrole-aggregation controller run?",
				sar.Spec.User, sar.Spec.ResourceAttributes.Verb, home)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}

	as := func(user string) (client.Client, error) {
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user}
		return client.New(c, client.Options{Scheme: Scheme()})
	}
	var errs []error
	expect := func(user, what string, allowed bool, err error) {
		switch {
		case allowed && err != nil:
			errs = append(errs, fmt.Errorf("%s: %s: want allowed, got %w", user, what, err))
		case !allowed && !apierrors.IsForbidden(err):
			errs = append(errs, fmt.Errorf("%s: %s: want Forbidden, got %v", user, what, err))
		}
	}
	connector := func(ns, name string) *v1alpha1.Connector {
		return &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: "https://harbor.example.invalid"}}
	}

	// Editors and admins manage Connectors; nobody but the manager writes their status.
	for _, user := range []string{AccessEditor, AccessAdmin} {
		c, err := as(user)
		if err != nil {
			return err
		}
		conn := connector(home, user)
		err = c.Create(ctx, conn)
		expect(user, "create a Connector in "+home, true, err)
		if err != nil {
			continue
		}
		conn.Spec.Address = "https://harbor2.example.invalid"
		expect(user, "update a Connector", true, c.Update(ctx, conn))
		expect(user, "patch a Connector", true, c.Patch(ctx, conn, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"cpaas.io/description":"access check"}}}`))))
		conn.Status.ObservedGeneration = 42
		expect(user, "update a Connector's status", false, c.Status().Update(ctx, conn))
		expect(user, "delete a Connector", true, c.Delete(ctx, conn))
	}

	// Viewers read; they cannot create, change, delete or write status.
	target := connector(home, "viewed")
	if err := admin.Create(ctx, target); err != nil {
		return err
	}
	viewer, err := as(AccessViewer)
	if err != nil {
		return err
	}
	var seen v1alpha1.Connector
	expect(AccessViewer, "get a Connector", true, viewer.Get(ctx, client.ObjectKeyFromObject(target), &seen))
	expect(AccessViewer, "list Connectors", true, viewer.List(ctx, &v1alpha1.ConnectorList{}, client.InNamespace(home)))
	expect(AccessViewer, "create a Connector", false, viewer.Create(ctx, connector(home, "by-viewer")))
	if seen.Name != "" {
		changed := seen.DeepCopy()
		changed.Spec.Address = "https://elsewhere.example.invalid"
		expect(AccessViewer, "update a Connector", false, viewer.Update(ctx, changed))
		changed = seen.DeepCopy()
		changed.Status.ObservedGeneration = 42
		expect(AccessViewer, "update a Connector's status", false, viewer.Status().Update(ctx, changed))
		expect(AccessViewer, "delete a Connector", false, viewer.Delete(ctx, seen.DeepCopy()))
	}

	// A binding in one namespace grants nothing in another.
	editor, err := as(AccessEditor)
	if err != nil {
		return err
	}
	expect(AccessEditor, "create a Connector in "+other+" (no binding there)", false, editor.Create(ctx, connector(other, "elsewhere")))
	expect(AccessEditor, "list Connectors in "+other+" (no binding there)", false, editor.List(ctx, &v1alpha1.ConnectorList{}, client.InNamespace(other)))
	return errors.Join(errs...)
}

// AggregateClusterRoles does what kube-controller-manager's clusterrole-aggregation controller
// does, for an API server that runs without it (envtest): every ClusterRole with an
// aggregationRule gets the rules of every other ClusterRole its selectors match, in name order,
// without repeats, until nothing changes (admin aggregates edit, which aggregates view).
func AggregateClusterRoles(ctx context.Context, c client.Client) error {
	for range 10 {
		var roles rbacv1.ClusterRoleList
		if err := c.List(ctx, &roles); err != nil {
			return err
		}
		sort.Slice(roles.Items, func(i, j int) bool { return roles.Items[i].Name < roles.Items[j].Name })
		changed := false
		for i := range roles.Items {
			role := &roles.Items[i]
			if role.AggregationRule == nil {
				continue
			}
			var rules []rbacv1.PolicyRule
			for _, source := range roles.Items {
				if source.Name == role.Name || !selectedBy(role.AggregationRule.ClusterRoleSelectors, source.Labels) {
					continue
				}
				for _, r := range source.Rules {
					if !containsRule(rules, r) {
						rules = append(rules, r)
					}
				}
			}
			if equality.Semantic.DeepEqual(rules, role.Rules) {
				continue
			}
			role.Rules = rules
			if err := c.Update(ctx, role); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return errors.New("the aggregated ClusterRoles did not settle in 10 passes")
}

func selectedBy(selectors []metav1.LabelSelector, set map[string]string) bool {
	for _, s := range selectors {
		sel, err := metav1.LabelSelectorAsSelector(&s)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(set)) {
			return true
		}
	}
	return false
}

func containsRule(rules []rbacv1.PolicyRule, r rbacv1.PolicyRule) bool {
	for _, have := range rules {
		if equality.Semantic.DeepEqual(have, r) {
			return true
		}
	}
	return false
}
