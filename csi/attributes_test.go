package csi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/policies"
)

func TestParseAttributes(t *testing.T) {
	got, errs := ParseAttributes(map[string]string{"connectors": "team-a/harbor,kube-public/shared"}, "team-a")
	require.Empty(t, errs)
	assert.Equal(t, []policies.ConnectorRef{{Namespace: "kube-public", Name: "shared"}, {Namespace: "team-a", Name: "harbor"}}, got.Connectors)
	assert.Equal(t, []string{ConfigBuildkitd, ConfigRegistry}, got.Configurations, "defaults")

	got, errs = ParseAttributes(map[string]string{"connector.name": "harbor", "configuration.names": "registry-config"}, "team-b")
	require.Empty(t, errs)
	assert.Equal(t, []policies.ConnectorRef{{Namespace: "team-b", Name: "harbor"}}, got.Connectors, "seed form, pod namespace by default")
	assert.Equal(t, []string{ConfigRegistry}, got.Configurations)

	got, errs = ParseAttributes(map[string]string{"connector.name": "harbor", "connector.namespace": "tools", "configuration.names": "!buildkitd"}, "team-b")
	require.Empty(t, errs)
	assert.Equal(t, "tools", got.Connectors[0].Namespace)
	assert.Equal(t, []string{ConfigRegistry}, got.Configurations, "!name excludes a default")
}

func TestParseAttributesErrorsNameTheField(t *testing.T) {
	cases := map[string]struct {
		attrs map[string]string
		field string
	}{
		"nothing":        {map[string]string{}, "volumeAttributes[connectors]"},
		"both forms":     {map[string]string{"connectors": "a/b", "connector.name": "b"}, "volumeAttributes[connector.name]"},
		"bad list":       {map[string]string{"connectors": "a/b/c"}, "volumeAttributes[connectors]"},
		"bad name":       {map[string]string{"connector.name": "Not_A_Name"}, "volumeAttributes[connector.name]"},
		"unknown config": {map[string]string{"connectors": "a/b", "configuration.names": "kubeconfig"}, "volumeAttributes[configuration.names]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, errs := ParseAttributes(tc.attrs, "team-a")
			require.NotEmpty(t, errs)
			assert.Equal(t, tc.field, errs[0].Field)
		})
	}
}
