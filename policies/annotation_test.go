package policies

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConnectorAnnotation(t *testing.T) {
	cases := []struct {
		value   string
		want    []ConnectorRef
		wantErr string
	}{
		{"harbor", []ConnectorRef{{"team-a", "harbor"}}, ""},
		{"team-b/harbor", []ConnectorRef{{"team-b", "harbor"}}, ""},
		{" harbor , kube-public/shared ", []ConnectorRef{{"kube-public", "shared"}, {"team-a", "harbor"}}, ""},
		{"harbor,team-a/harbor", []ConnectorRef{{"team-a", "harbor"}}, ""},
		{"", nil, "the value is empty"},
		{"a,,b", nil, "empty entry"},
		{"a/b/c", nil, `"a/b/c" has more than one '/'`},
		{"Harbor", nil, `connector name "Harbor" is not a valid name`},
		{"team_a/harbor", nil, `namespace "team_a" is not a valid namespace name`},
		{"harbor.example.com", nil, `connector name "harbor.example.com"`},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			got, err := ParseConnectorAnnotation(tc.value, "team-a")
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Contains(t, err.Error(), AnnotationConnector, "the error names the key")
				assert.Contains(t, err.Error(), "expected <name> or <namespace>/<name>", "the error says the fix")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseInjectAnnotation(t *testing.T) {
	got, err := ParseInjectAnnotation("", false)
	require.NoError(t, err)
	assert.Equal(t, AllParts, got)
	got, err = ParseInjectAnnotation("images, env", true)
	require.NoError(t, err)
	assert.Equal(t, InjectSet{Env: true, Images: true}, got)
	_, err = ParseInjectAnnotation("volume,secrets", true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"secrets" is not one of volume, env, images`)
}

func TestCanUseConnector(t *testing.T) {
	teamA := Namespace{Name: "team-a", Labels: map[string]string{LabelProject: "alpha"}}
	teamB := Namespace{Name: "team-b", Labels: map[string]string{LabelProject: "beta"}}
	alphaHome := Namespace{Name: "alpha", Labels: map[string]string{LabelInnerNamespace: "alpha"}}
	public := Namespace{Name: PublicNamespace}
	unlabelled := Namespace{Name: "loner"}
	// A namespace that claims a project label but whose group namespace is another: no access.
	forged := Namespace{Name: "forged", Labels: map[string]string{LabelInnerNamespace: "alpha"}}

	cases := []struct {
		name        string
		from, owner Namespace
		allowed     bool
	}{
		{"own namespace", teamA, teamA, true},
		{"kube-public for everyone", unlabelled, public, true},
		{"project member uses its group's connector", teamA, alphaHome, true},
		{"other project refused", teamB, alphaHome, false},
		{"unlabelled refused", unlabelled, alphaHome, false},
		{"another team's namespace refused", teamB, teamA, false},
		{"project label alone does not open a plain namespace", teamA, unlabelled, false},
		{"inner-namespace label shares only with project members", unlabelled, forged, false},
		{"the group namespace cannot reach a member's connector", alphaHome, teamA, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CanUseConnector(tc.from, tc.owner, "harbor")
			if tc.allowed {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "connector "+tc.owner.Name+"/harbor is not visible from namespace "+tc.from.Name)
		})
	}
}
