package testharbor_test

import (
	"net/http"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// An outage refuses connections on the Harbor's address, cuts kept-alive ones, and ends with the
// same address serving again.
func TestOutage(t *testing.T) {
	h := start(t, testharbor.Options{TLS: true})
	c := client(h)
	ping := func() (*http.Response, error) { return c.Get(h.URL() + "/api/v2.0/ping") }
	resp, err := ping()
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, h.SetDown(true))
	_, err = ping()
	require.Error(t, err, "a kept-alive connection is cut and a new one refused")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)

	require.NoError(t, h.SetDown(false))
	resp, err = ping()
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
