package csi

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/alauda/harbor-connector/policies"
)

// The webhook mounts policies.DirContainersCA by subPath at /etc/containers/certs.d/<host>. The
// kubelet resolves a subPath (symlinks included) once, when the container starts, and
// bind-mounts what it resolved to (k8s.io/kubernetes pkg/volume/util/subpath, doBindSubPath).
// These tests make those bind mounts themselves and renew the CA with a republish.

// renewal publishes a volume with the first CA and returns its target path and a function that
// republishes it with the second.
func renewal(t *testing.T) (target string, first, second []byte, renew func()) {
	t.Helper()
	second, err := newSelfSigned(pkix.Name{CommonName: "connectors renewed test CA"})
	require.NoError(t, err)
	d := driver()
	bundle := testBundle
	d.CABundle = func() ([]byte, error) { return bundle, nil }
	target = filepath.Join(t.TempDir(), "mount")
	require.NoError(t, publish(t, d, target, "team-a", "first-token"))
	return target, testBundle, second, func() {
		bundle = second
		require.NoError(t, publish(t, d, target, "team-a", "second-token"))
	}
}

// subPathRenewal is renewal for the bind-mount tests, which need root, with subPath resolved as
// the kubelet resolves it (links included).
func subPathRenewal(t *testing.T, subPath string) (target, resolved string, first, second []byte, renew func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root; CI runs as root")
	}
	target, first, second, renew = renewal(t)
	resolved, err := filepath.EvalSymlinks(filepath.Join(target, subPath))
	require.NoError(t, err)
	return target, resolved, first, second, renew
}

// bindMount bind-mounts src on dst, as the kubelet mounts a resolved subPath, until the test ends.
func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, unix.Mount(src, dst, "", unix.MS_BIND, ""), "bind-mounting %s on %s", src, dst)
	t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// The CA directory is a real directory, not a link into ..data, that holds only ca.crt: every
// other *.crt, *.cert or *.key there would be read by containers/image too.
func TestPublishWritesTheContainersCADirectory(t *testing.T) {
	target, first, second, renew := renewal(t)
	check := func(want []byte) {
		t.Helper()
		dir := filepath.Join(target, policies.DirContainersCA)
		fi, err := os.Lstat(dir)
		require.NoError(t, err)
		assert.True(t, fi.IsDir(), "a real directory: a subPath through a link would resolve into one ..data generation")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "only the CA, no temporary file left")
		assert.Equal(t, policies.FileCACert, entries[0].Name())
		info, err := entries[0].Info()
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), info.Mode().Perm(), "readable whatever the pod's UID")
		assert.Equal(t, string(want), readString(t, filepath.Join(dir, policies.FileCACert)))
		assert.Equal(t, string(want), readString(t, filepath.Join(target, policies.FileCACert)), "ca.crt stays, for pods that mount it")
	}
	check(first)
	renew()
	check(second)
}

func TestWriteInPlaceKeepsTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	// The kubelet creates a subPath directory that is missing at container start (a pod the
	// webhook mutated on a node whose driver predates the directory); a later publish fills it.
	require.NoError(t, os.Mkdir(dir, 0o755))
	before, err := os.Stat(dir)
	require.NoError(t, err)
	require.NoError(t, WriteInPlace(dir, "ca.crt", []byte("one")))
	require.NoError(t, err)
	// A publish that failed between writing and renaming left its temporary file.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".ca.crt.123.tmp"), []byte("half"), 0o600))
	require.NoError(t, WriteInPlace(dir, "ca.crt", []byte("two")))
	after, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, os.SameFile(before, after), "the same directory, so a bind mount of it follows")
	assert.Equal(t, "two", readString(t, filepath.Join(dir, "ca.crt")))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the stale temporary file is removed")

	file, err := os.Stat(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	require.NoError(t, WriteInPlace(dir, "ca.crt", []byte("two")))
	again, err := os.Stat(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	assert.True(t, os.SameFile(file, again), "unchanged content is not rewritten")
}

// The webhook's mount: the directory, bind-mounted as the kubelet does (bindTarget stands for its
// volume-subpaths/<volume>/<container>/<index>), shows the renewed CA after a republish, and the
// container runtime can still bind that target into a container created after the republish.
func TestDirectorySubPathMountFollowsRenewal(t *testing.T) {
	target, resolved, first, second, renew := subPathRenewal(t, policies.DirContainersCA)
	assert.Equal(t, filepath.Join(target, policies.DirContainersCA), resolved, "nothing to resolve: no link into ..data")
	bindTarget := t.TempDir()
	bindMount(t, resolved, bindTarget)
	assert.Equal(t, string(first), readString(t, filepath.Join(bindTarget, policies.FileCACert)))

	renew()
	assert.Equal(t, string(second), readString(t, filepath.Join(bindTarget, policies.FileCACert)), "the mounted directory shows the renewed CA")
	entries, err := os.ReadDir(bindTarget)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "containers/image finds only ca.crt")
	inContainer := t.TempDir() // /etc/containers/certs.d/<host>
	bindMount(t, bindTarget, inContainer)
	assert.Equal(t, string(second), readString(t, filepath.Join(inContainer, policies.FileCACert)))
}

// Why the webhook no longer mounts the file (the mount of earlier versions, which pods created
// by them keep): the kubelet binds the file ca.crt resolved to, inside one ..data generation,
// and that file stays what a running container sees after the republish removed it; a container
// the runtime creates from that bind target after the republish does not start at all (a bind
// of a mount whose file was unlinked fails with ENOENT: kubernetes/kubernetes#68211, #127602).
// ca.crt itself shows the renewed CA, which is what the kubelet binds when it prepares the
// subPath again.
func TestFileSubPathMountIsStaleAfterRenewal(t *testing.T) {
	target, resolved, first, second, renew := subPathRenewal(t, policies.FileCACert)
	assert.Contains(t, resolved, "..data_", "the file resolves into one generation")
	bindTarget := filepath.Join(t.TempDir(), "0")
	require.NoError(t, os.WriteFile(bindTarget, nil, 0o644))
	bindMount(t, resolved, bindTarget)

	renew()
	_, err := os.Stat(resolved)
	assert.True(t, os.IsNotExist(err), "the republish removed the old generation")
	assert.Equal(t, string(first), readString(t, bindTarget), "the file mount keeps the old CA")
	assert.Equal(t, string(second), readString(t, filepath.Join(target, policies.FileCACert)))
	inContainer := filepath.Join(t.TempDir(), "ca.crt") // /etc/containers/certs.d/<host>/ca.crt
	require.NoError(t, os.WriteFile(inContainer, nil, 0o644))
	err = unix.Mount(bindTarget, inContainer, "", unix.MS_BIND, "")
	if err == nil {
		_ = unix.Unmount(inContainer, unix.MNT_DETACH)
	}
	assert.ErrorIs(t, err, unix.ENOENT, "a container created after the republish cannot mount the file")
}
