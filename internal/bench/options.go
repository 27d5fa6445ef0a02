package bench

import (
	"log/slog"
	"reflect"
)

// withDefaults sets every field of *opts that holds its zero value (an
// option left unset) to that field of defaults, looking into fields that
// are structs of options themselves: zero values take the documented
// defaults. Only exported fields are set.
func withDefaults[T any](opts *T, defaults T) {
	fillZero(reflect.ValueOf(opts).Elem(), reflect.ValueOf(defaults))
}

func fillZero(dst, def reflect.Value) {
	for i := range dst.NumField() {
		f := dst.Field(i)
		switch {
		case !f.CanSet():
		case f.Kind() == reflect.Struct:
			fillZero(f, def.Field(i))
		case f.IsZero():
			f.Set(def.Field(i))
		}
	}
}

// discardLogger is the logger of a run given none.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
