package harness

import "strings"

// ParseList reads a comma-separated selection out of all (a benchmark's
// faults, the demo's modes) and returns it in all's order, without
// duplicates. Names are trimmed, empty ones skipped, and passed through
// fold when it is not nil (e.g. strings.ToLower). A name not in all is
// the error unknown returns for it; a selection of none is the error
// none.
func ParseList[T ~string](s string, all []T, fold func(string) string, unknown func(name string) error, none error) ([]T, error) {
	want := map[T]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		key := name
		if fold != nil {
			key = fold(name)
		}
		known := false
		for _, a := range all {
			known = known || a == T(key)
		}
		if !known {
			return nil, unknown(name)
		}
		want[T(key)] = true
	}
	var out []T
	for _, a := range all {
		if want[a] {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, none
	}
	return out, nil
}
