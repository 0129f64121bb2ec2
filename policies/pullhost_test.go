package policies

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/fixtures"
)

func TestPullHostRuleSpellings(t *testing.T) {
	rule, err := NewPullHostRule(DefaultPullHost)
	require.NoError(t, err)
	for image, want := range fixtures.PullHostSpellings {
		assert.Equal(t, want, rule.AimsAtPullHost(image), image)
	}
}

func TestPullHostRuleOtherPullHosts(t *testing.T) {
	named, err := NewPullHostRule("pull.example.internal:7000")
	require.NoError(t, err)
	assert.True(t, named.AimsAtPullHost("PULL.example.internal:7000/team/app"))
	assert.True(t, named.AimsAtPullHost("localhost:7000/team/app"), "loopback spellings at the pull host's port")
	assert.False(t, named.AimsAtPullHost("localhost:5050/team/app"))
	assert.False(t, named.AimsAtPullHost("pull.example.internal/team/app"))

	portless, err := NewPullHostRule("localhost")
	require.NoError(t, err)
	assert.True(t, portless.AimsAtPullHost("127.0.0.1/team/app"))
	assert.False(t, portless.AimsAtPullHost("127.0.0.1:5050/team/app"))

	for _, bad := range []string{"", "127.0.0.1:5050/x", "a b"} {
		_, err := NewPullHostRule(bad)
		assert.Error(t, err, bad)
	}
}

func TestPullHostRuleCheckImage(t *testing.T) {
	rule, err := NewPullHostRule(DefaultPullHost)
	require.NoError(t, err)
	a := ConnectorRef{Namespace: "team-a", Name: "harbor"}
	named := []ConnectorRef{a, {Namespace: "kube-public", Name: "hub"}}

	ref, ok, err := rule.CheckImage("127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app:v1", named, true)
	assert.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, a, ref)

	_, ok, err = rule.CheckImage("harbor.example.com/team/app:v1", named, true)
	assert.NoError(t, err)
	assert.False(t, ok, "not aimed at the pull host")
	_, ok, err = rule.CheckImage("harbor.example.com/team/app:v1", nil, false)
	assert.NoError(t, err)
	assert.False(t, ok)

	for image, want := range map[string]string{
		"127.0.0.1:5050/namespaces/team-b/connectors/private/app":  "image 127.0.0.1:5050/namespaces/team-b/connectors/private/app points at connector team-b/private through the pull host, but the pod's annotation connectors.cpaas.io/proxy-inject-status does not name that connector",
		"localhost:5050/namespaces/team-a/connectors/harbor/app":   "points at the connectors pull host under another name (localhost:5050); the webhook writes 127.0.0.1:5050/namespaces/<ns>/connectors/<name>/<repo>",
		"[::1]:5050/namespaces/team-a/connectors/harbor/app":       "under another name ([::1]:5050)",
		"harbor.example.com/namespaces/team-a/connectors/harbor/x": "under another name (harbor.example.com)",
		"127.0.0.1:5050/team/app":                                  "points at the connectors pull host but not at a connector's path 127.0.0.1:5050/namespaces/<ns>/connectors/<name>/<repo>",
		"127.0.0.1:5050/namespaces/Team-A/connectors/harbor/app":   "not at a connector's path",
	} {
		_, ok, err := rule.CheckImage(image, named, true)
		assert.True(t, ok, image)
		if assert.Error(t, err, image) {
			assert.Contains(t, err.Error(), want)
		}
	}

	_, ok, err = rule.CheckImage("127.0.0.1:5050/namespaces/team-a/connectors/harbor/app", nil, false)
	assert.True(t, ok)
	require.Error(t, err)
	assert.Equal(t, "image 127.0.0.1:5050/namespaces/team-a/connectors/harbor/app points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook: use the registry's own image name and add the annotation connectors.cpaas.io/connector: <connector>", err.Error(),
		"the same words as the admission policy")
}

func TestParseStatus(t *testing.T) {
	s, refs, err := ParseStatus(`{"connectors":["kube-public/hub","team-a/harbor"],"volume":"connectors-proxy","env":["HTTP_PROXY"],"images":{"app":"harbor.example.com/team/app:v1"}}`)
	require.NoError(t, err)
	assert.Equal(t, []ConnectorRef{{"kube-public", "hub"}, {"team-a", "harbor"}}, refs)
	assert.Equal(t, "harbor.example.com/team/app:v1", s.Images["app"])

	_, refs, err = ParseStatus(`{"connectors":[]}`)
	require.NoError(t, err)
	assert.Empty(t, refs)

	for raw, want := range map[string]string{
		``:                                       "is not the JSON the connectors webhook writes",
		`not json`:                               "is not the JSON the connectors webhook writes",
		`{"connectors":["team-a/harbor"],"x":1}`: `unknown field "x"`,
		`{"connectors":["team-a/harbor"]} {}`:    "trailing data",
		`{"connectors":["harbor"]}`:              `names connector "harbor", which is not <namespace>/<name>`,
		`{"connectors":["a/b/c"]}`:               `names connector "a/b/c"`,
		`{"connectors":["Team-A/harbor"]}`:       `names connector "Team-A/harbor"`,
		`{"connectors":["team-a/"]}`:             `names connector "team-a/"`,
		`{"connectors":[" team-a/harbor"]}`:      `names connector " team-a/harbor"`,
		`{"connectors":"team-a/harbor"}`:         "is not the JSON",
	} {
		_, _, err := ParseStatus(raw)
		if assert.Error(t, err, raw) {
			assert.Contains(t, err.Error(), want, raw)
		}
	}
}
