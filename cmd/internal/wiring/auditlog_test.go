package wiring

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every audit line is written, however many come in a second (production zap would keep 100,
// then 1 in 100), as JSON with the fields the other lines have.
func TestAuditLoggerNeverSamples(t *testing.T) {
	var out bytes.Buffer
	log := AuditLogger(&out).WithName("proxy")
	const n = 5000
	for i := range n {
		log.Info("request", "op", "GET blob", "status", 200, "i", i)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, n)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.Equal(t, "info", first["level"])
	assert.Equal(t, "proxy", first["logger"])
	assert.Equal(t, "request", first["msg"])
	assert.Contains(t, first, "ts")
}
