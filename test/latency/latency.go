// Package latency summarises the latencies the benchmarks time (make bench, make bench-scale),
// so every table reads its percentiles the same way.
package latency

import (
	"fmt"
	"sort"
	"time"
)

// Percentiles are the p50 and p99 of d (nearest rank, from a sorted copy); zero for no samples.
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*50/100], s[len(s)*99/100]
}

// Millis is d in milliseconds with three decimals, as the tables print it ("1.234").
func Millis(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
