package policies

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRealmAllowed(t *testing.T) {
	origin, err := OriginOf("https://Harbor.example.com/some/path")
	require.NoError(t, err)
	assert.Equal(t, "https://Harbor.example.com", origin.String())
	parse := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	cases := []struct {
		realm, allowed string
		ok             bool
	}{
		{"https://harbor.example.com/service/token", "", true},
		{"https://harbor.example.com:443/service/token", "", true},
		{"http://harbor.example.com/service/token", "", false},
		{"https://harbor.example.com:8443/service/token", "", false},
		{"https://auth.example.com/token", "", false},
		{"https://s3.harbor.example.com/token", "", false},
		{"https://auth.example.com/token", "auth.example.com", true},
		{"http://auth.example.com/token", "auth.example.com", false},
		{"https://auth.example.com:8443/token", "auth.example.com:8443", true},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.ok, RealmAllowed(origin, parse(tc.realm), tc.allowed), "%s allowed=%q", tc.realm, tc.allowed)
	}
	_, err = OriginOf("harbor.example.com")
	assert.Error(t, err)
}
