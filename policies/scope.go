package policies

import (
	"net/http"
	"sort"
)

// OCI token actions (distribution token spec; Harbor's names).
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
)

// ScopesFor computes the registry token scopes a request needs, from its method and target
// alone, as Harbor's own client does (pkg/registry/auth/bearer/scope.go): pull for GET and HEAD,
// pull and push for POST, PUT and PATCH, delete for DELETE, plus pull on the source repository
// of a cross-repository mount. Computing scopes up front means the proxy never learns them from
// 401 challenges, which Harbor answers with a Basic challenge that names no scope
// (harbor#18856). The result is sorted, so equal needs share one cached token.
func ScopesFor(method, repository, mountFrom string) []string {
	var actions string
	switch method {
	case http.MethodGet, http.MethodHead:
		actions = ActionPull
	case http.MethodDelete:
		actions = ActionDelete
	default:
		actions = ActionPull + "," + ActionPush
	}
	scopes := []string{"repository:" + repository + ":" + actions}
	if mountFrom != "" && mountFrom != repository {
		scopes = append(scopes, "repository:"+mountFrom+":"+ActionPull)
	}
	sort.Strings(scopes)
	return scopes
}
