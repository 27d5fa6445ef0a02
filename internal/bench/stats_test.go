package bench

import (
	"path/filepath"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{
		{50, 100 * time.Millisecond}, {90, 180 * time.Millisecond}, {99, 198 * time.Millisecond},
		{100, 200 * time.Millisecond}, {0.1, 1 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%v of 1..200 ms = %v, want %v", c.p, got, c.want)
		}
	}
	one := []time.Duration{7 * time.Millisecond}
	for _, p := range []float64{1, 50, 99, 100} {
		if got := percentile(one, p); got != 7*time.Millisecond {
			t.Errorf("p%v of one sample = %v", p, got)
		}
	}
}

func TestDistOf(t *testing.T) {
	if d := distOf(nil); d != (Dist{}) {
		t.Errorf("empty: %+v", d)
	}
	// Unsorted input, not modified; microsecond rounding.
	in := []time.Duration{3 * time.Millisecond, 1500 * time.Microsecond, 10 * time.Millisecond, 2*time.Millisecond + 1234}
	d := distOf(in)
	want := Dist{N: 4, MinMS: 1.5, P50MS: 2.001, P90MS: 10, P99MS: 10, MaxMS: 10, MeanMS: 4.125}
	if d != want {
		t.Errorf("distOf = %+v, want %+v", d, want)
	}
	if in[0] != 3*time.Millisecond {
		t.Error("distOf sorted its input")
	}
}

func TestDurationAndTargetFormatting(t *testing.T) {
	for v, want := range map[float64]string{0.25: "250µs", 1.5: "1.50ms", 12.345: "12.35ms"} {
		if got := fmtMS(v); got != want {
			t.Errorf("fmtMS(%v) = %q, want %q", v, got, want)
		}
	}
	if got := mib(200 << 20); got != "200.0 MiB" {
		t.Errorf("mib = %q", got)
	}
	tc := TargetCheck{What: "x", Target: "≤ 10ms", Value: 12.5, Unit: "ms"}
	if got := tc.String(); got != "x: 12.50ms (target ≤ 10ms) — MISSED" {
		t.Errorf("TargetCheck.String = %q", got)
	}
	tc = TargetCheck{What: "rss", Target: "≤ 200.0 MiB", Value: 150 << 20, Unit: "bytes", Met: true}
	if got := tc.String(); got != "rss: 150.0 MiB (target ≤ 200.0 MiB) — met" {
		t.Errorf("TargetCheck.String = %q", got)
	}
}

func TestResultPath(t *testing.T) {
	now := time.Date(2026, 11, 25, 14, 3, 4, 0, time.UTC)
	if got := ResultPath("registry", now); got != filepath.Join("bench-results", "registry-2026-11-25-140304.json") {
		t.Errorf("ResultPath = %s", got)
	}
}
