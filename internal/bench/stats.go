package bench

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"
)

// Dist summarizes a sample of durations, in milliseconds with microsecond
// resolution. Percentiles use the nearest-rank method: the p-th percentile
// of n sorted values is the value of rank ⌈p/100 · n⌉, so it is always an
// observed value (with 200 samples, p99 is the third largest).
type Dist struct {
	N      int     `json:"n"`
	MinMS  float64 `json:"min_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
	MeanMS float64 `json:"mean_ms"`
}

// distOf summarizes ds (the zero Dist when empty). ds is not modified.
func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{
		N:      len(s),
		MinMS:  ms(s[0]),
		P50MS:  ms(percentile(s, 50)),
		P90MS:  ms(percentile(s, 90)),
		P99MS:  ms(percentile(s, 99)),
		MaxMS:  ms(s[len(s)-1]),
		MeanMS: ms(sum / time.Duration(len(s))),
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which must not be empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts a duration to milliseconds rounded to the microsecond.
func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

// fmtMS formats milliseconds for a table: µs below 1 ms, else ms.
func fmtMS(v float64) string { return micros(v * 1000) }

// ResultPath is where a benchmark's results go unless --json says
// otherwise: bench-results/<kind>-<date>.json.
func ResultPath(kind string, now time.Time) string {
	return filepath.Join("bench-results", kind+"-"+now.Format("2006-01-02-150405")+".json")
}

// verdict renders a target check for tables.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// mib formats a byte count in MiB.
func mib(bytes float64) string { return fmt.Sprintf("%.1f MiB", bytes/(1<<20)) }
