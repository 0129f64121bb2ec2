package node

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLddPaths(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd)
	libseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f5c)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c)
	/lib64/ld-linux-x86-64.so.2 (0x00007f5c)
`
	paths, err := lddPaths(out)
	require.NoError(t, err)
	assert.Equal(t, []string{"/lib/x86_64-linux-gnu/libseccomp.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}, paths)

	_, err = lddPaths("\tlibgpgme.so.11 => not found\n")
	assert.ErrorContains(t, err, "missing library: libgpgme.so.11")
}
