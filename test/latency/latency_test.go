package latency

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p50, p99 := Percentiles(d)
	assert.Equal(t, 51*time.Millisecond, p50)
	assert.Equal(t, 100*time.Millisecond, p99)
	assert.Equal(t, 100*time.Millisecond, d[0], "the samples are left as they were")
	p50, p99 = Percentiles(nil)
	assert.Zero(t, p50+p99)
	assert.Equal(t, "1.234", Millis(1234*time.Microsecond))
}
