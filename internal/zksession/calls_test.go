package zksession_test

import (
	"slices"
	"testing"

	"github.com/zkgate/zkgate/internal/zksession"
)

func TestSequenceOf(t *testing.T) {
	for name, want := range map[string]int64{
		"e-0000000000":       0,
		"e-0000000042":       42,
		"n_tok_2147483647":   2147483647,
		"n_x":                -1,
		"e-00000000x1":       -1,
		"e--000000001":       -1,
		"":                   -1,
		"0000000007":         7,
		"lock-n_0000000123x": -1,
	} {
		got, ok := zksession.SequenceOf(name)
		if want < 0 && ok || want >= 0 && (!ok || got != want) {
			t.Errorf("SequenceOf(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

func TestSortSequential(t *testing.T) {
	names := []string{"n_b_0000000010", "junk", "n_a_0000000002", "n_c_0000000011", "n_x", "e-0000000001", "n_0000000001"}
	got := zksession.SortSequential(names, "n_")
	want := []string{"n_0000000001", "n_a_0000000002", "n_b_0000000010", "n_c_0000000011"}
	if !slices.Equal(got, want) {
		t.Errorf("SortSequential(n_) = %v, want %v", got, want)
	}
	if names[0] != "n_b_0000000010" {
		t.Errorf("SortSequential reordered its argument: %v", names)
	}
	if got := zksession.SortSequential(names, "e-"); !slices.Equal(got, []string{"e-0000000001"}) {
		t.Errorf("SortSequential(e-) = %v", got)
	}
}
