package images_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/images"
)

// SOURCE_DATE_EPOCH wins over the commit time, and a value that is not a Unix time is refused
// rather than ignored.
func TestSourceDateEpoch(t *testing.T) {
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	ctx := context.Background()

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	o, err := images.DefaultOptions(ctx, images.Options{Root: root, WorkDir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, time.Unix(1700000000, 0).UTC(), o.Epoch)
	assert.Equal(t, images.Version, o.Version)
	assert.Equal(t, images.DefaultCABundle, o.CABundle)

	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	_, err = images.DefaultOptions(ctx, images.Options{Root: root, WorkDir: t.TempDir()})
	assert.ErrorContains(t, err, `SOURCE_DATE_EPOCH="yesterday"`)
}
