package proxy_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freshConnector makes a new connector on the main Harbor, so its token cache starts empty.
func freshConnector(t *testing.T, name string) {
	t.Helper()
	robot, secret := harbor.AddRobot("team", name)
	require.NoError(t, connectorWithSecret(context.Background(), nsA, name, harbor.URL(), robot, secret, harbor.CACertPEM(), nil))
}

// pull fetches the manifest and every blob the way a client does (HEAD, GET manifest, GET
// blobs) and checks each blob against its digest.
func pull(client *http.Client, token, connector, repo, tag string) error {
	return pullPaced(client, token, connector, repo, tag, 0)
}

// pullPaced is pull reading blobs 64 KiB at a time with a pause after each read, so a transfer
// is still in flight when something happens to the registry.
func pullPaced(client *http.Client, token, connector, repo, tag string, pause time.Duration) error {
	base := "https://" + proxyAddr + "/v2/namespaces/team-a/connectors/" + connector + "/team/" + repo
	do := func(method, url string) (*http.Response, error) {
		req, _ := http.NewRequest(method, url, nil)
		req.SetBasicAuth("sa", token)
		req.Header.Set("Accept", manifestTypes)
		return client.Do(req)
	}
	resp, err := do("HEAD", base+"/manifests/"+tag)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HEAD manifest: HTTP %d", resp.StatusCode)
	}
	resp, err = do("GET", base+"/manifests/"+tag)
	if err != nil {
		return err
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	err = decodeJSON(resp, &m)
	if err != nil {
		return err
	}
	for _, d := range append([]string{m.Config.Digest}, digests(m.Layers)...) {
		resp, err := do("GET", base+"/blobs/"+d)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = copyPaced(h, resp.Body, pause)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET blob: HTTP %d", resp.StatusCode)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
			return fmt.Errorf("WRONG BYTES: blob %s came back as %s", d, got)
		}
	}
	return nil
}

func copyPaced(dst io.Writer, src io.Reader, pause time.Duration) (int64, error) {
	if pause == 0 {
		return io.Copy(dst, src)
	}
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := src.Read(buf)
		n += int64(m)
		_, _ = dst.Write(buf[:m])
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		time.Sleep(pause)
	}
}

func digests(layers []struct{ Digest string }) []string {
	out := make([]string, 0, len(layers))
	for _, l := range layers {
		out = append(out, l.Digest)
	}
	return out
}

// 100 concurrent pulls of one repository through a connector with a cold cache cost exactly one
// token fetch: the scope is computed up front and the fetch is single-flight.
func TestOneTokenFetchForConcurrentPulls(t *testing.T) {
	freshConnector(t, "flight")
	home := clientHome(t, saToken(t, nsA))
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 64<<10), "-t", prefix(nsA, "flight")+"/team/flight:v1")
	require.NoError(t, err, out)
	freshConnector(t, "flight2") // another cold connector on the same Harbor for the pulls
	token := saToken(t, nsA)
	client := httpClient()
	before := harbor.TokenFetches()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pull(client, token, "flight2", "flight", "v1")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), harbor.TokenFetches()-before, "one token fetch for 100 concurrent pulls")
}

// With Harbor's token service down, a cold connector answers UNAVAILABLE naming the connector;
// it recovers when the service does.
func TestTokenServiceDown(t *testing.T) {
	freshConnector(t, "tokendown")
	home := clientHome(t, saToken(t, nsA))
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 16<<10), "-t", prefix(nsA, "tokendown")+"/team/td:v1")
	require.NoError(t, err, out)
	freshConnector(t, "tokendown2")
	harbor.SetTokenServiceDown(true)
	t.Cleanup(func() { harbor.SetTokenServiceDown(false) })
	resp := request(t, "GET", "/v2/namespaces/team-a/connectors/tokendown2/team/td/manifests/v1", saToken(t, nsA), nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e := readOCIError(t, resp)
	assert.Equal(t, "UNAVAILABLE", e.Errors[0].Code)
	assert.Contains(t, e.Errors[0].Message, "the registry of connector team-a/tokendown2 is unavailable")
	assert.Contains(t, e.Errors[0].Message, "token service answered HTTP 503")

	harbor.SetTokenServiceDown(false)
	require.NoError(t, pull(httpClient(), saToken(t, nsA), "tokendown2", "td", "v1"))
}

// The registry restarts during 50 concurrent pulls: each pull ends with correct bytes or a
// clean error, none hangs, and the proxy serves pulls again afterwards.
func TestRegistryRestartDuringPulls(t *testing.T) {
	freshConnector(t, "restart")
	home := clientHome(t, saToken(t, nsA))
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 16<<20), "-t", prefix(nsA, "restart")+"/team/restart:v1")
	require.NoError(t, err, out)
	token := saToken(t, nsA)
	client := httpClient()
	client.Timeout = 90 * time.Second // a hang would show as a timeout error, failing the test below

	var wg sync.WaitGroup
	var finished atomic.Int32
	results := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- pullPaced(client, token, "restart", "restart", "v1", 2*time.Millisecond)
			finished.Add(1)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, harbor.RestartRegistry())
	require.Less(t, finished.Load(), int32(50), "the restart must land while pulls are in flight")
	wg.Wait()
	close(results)
	var ok, failed int
	for err := range results {
		if err == nil {
			ok++
			continue
		}
		failed++
		assert.NotContains(t, err.Error(), "WRONG BYTES")
		assert.NotContains(t, err.Error(), "Client.Timeout", "a pull hung")
	}
	t.Logf("during the restart: %d pulls completed, %d failed cleanly", ok, failed)
	require.Eventually(t, func() bool { return pull(client, token, "restart", "restart", "v1") == nil }, 20*time.Second, 200*time.Millisecond, "the proxy recovers")
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return jsonDecode(resp.Body, v)
}

// A client that disappears in the middle of an upload chunk: the proxy asks the registry to
// delete the upload session (harbor#20157). A distribution registry (Harbor's) refuses that
// DELETE when the broken chunk already moved the session's offset past the last _state it
// issued (416 RANGE_INVALID), leaving the session to its upload purging; the proxy cannot do
// better, so this checks that it asks, with a token allowed to delete.
func TestAbandonedUploadIsCancelledUpstream(t *testing.T) {
	token := saToken(t, nsA)
	resp := request(t, "POST", pathA("abandoned/blobs/uploads/"), token, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc := resp.Header.Get("Location")
	resp.Body.Close()

	cancels, chunks := harbor.UploadCancels(), harbor.UploadChunksStarted()
	conn, err := tls.Dial("tcp", proxyAddr, &tls.Config{RootCAs: proxyCA.Pool()})
	require.NoError(t, err)
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		loc, proxyAddr, basic(token), 64<<20)
	_, err = conn.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	// Leave only once the proxy relays the chunk: a client gone before that leaves nothing
	// upstream to cancel (under load that took longer than a fixed pause).
	require.Eventually(t, func() bool { return harbor.UploadChunksStarted() > chunks }, 30*time.Second, 10*time.Millisecond,
		"the proxy relayed the chunk to the registry")
	conn.Close() // gone, 63 MiB short

	require.Eventually(t, func() bool { return harbor.UploadCancels() == cancels+1 }, 10*time.Second, 50*time.Millisecond,
		"the proxy asked the registry to delete the abandoned upload session")
}
