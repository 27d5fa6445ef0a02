package bench

import (
	"log/slog"
	"reflect"
)

// RunOptions are the options every benchmark has (its options embed
// them).
type RunOptions struct {
	// Dir keeps the run's files (configurations, logs, ZooKeeper's data);
	// empty uses a temporary directory removed at the end.
	Dir string
	// Command and Version are recorded in the report.
	Command, Version string
	// Logger gets the progress; default none.
	Logger *slog.Logger
}

// OptionsError is the error of a benchmark whose options are refused:
// nothing was started.
type OptionsError struct{ Err error }

func (e *OptionsError) Error() string { return e.Err.Error() }
func (e *OptionsError) Unwrap() error { return e.Err }

// withDefaults sets every field of *opts that holds its zero value (an
// option left unset) to that field of defaults, looking into fields that
// are structs of options themselves: zero values take the documented
// defaults. Only exported fields are set; a struct field left wholly
// unset takes the default whole, a partly set one is filled field by
// field.
func withDefaults[T any](opts *T, defaults T) {
	fillZero(reflect.ValueOf(opts).Elem(), reflect.ValueOf(defaults))
}

func fillZero(dst, def reflect.Value) {
	for i := range dst.NumField() {
		f := dst.Field(i)
		switch {
		case !f.CanSet():
		case f.IsZero():
			f.Set(def.Field(i)) // a whole struct too (a time.Time, say)
		case f.Kind() == reflect.Struct:
			fillZero(f, def.Field(i)) // partly set: fill the rest
		}
	}
}

// runDefaults are the defaults of RunOptions: no progress log.
func runDefaults() RunOptions { return RunOptions{Logger: slog.New(slog.DiscardHandler)} }
