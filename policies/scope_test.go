package policies

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestScopesFor(t *testing.T) {
	cases := []struct {
		method, repo, from string
		want               []string
	}{
		{"GET", "team/app", "", []string{"repository:team/app:pull"}},
		{"HEAD", "team/app", "", []string{"repository:team/app:pull"}},
		{"POST", "team/app", "", []string{"repository:team/app:pull,push"}},
		{"PATCH", "team/app", "", []string{"repository:team/app:pull,push"}},
		{"PUT", "team/app", "", []string{"repository:team/app:pull,push"}},
		{"DELETE", "team/app", "", []string{"repository:team/app:delete"}},
		{"POST", "team/app", "team/base", []string{"repository:team/app:pull,push", "repository:team/base:pull"}},
		{"POST", "team/app", "team/app", []string{"repository:team/app:pull,push"}},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, ScopesFor(tc.method, tc.repo, tc.from), "%s %s from=%s", tc.method, tc.repo, tc.from)
	}
}
