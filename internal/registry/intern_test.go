package registry

import (
	"fmt"
	"reflect"
	"testing"
)

func same(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func TestInternerSharesEqualMetadata(t *testing.T) {
	n := newInterner()
	a := n.intern(map[string]string{"instance_status": "UP", "zone": "a"})
	b := n.intern(map[string]string{"zone": "a", "instance_status": "UP"})
	if !same(a, b) {
		t.Error("equal metadata not shared")
	}
	c := n.intern(map[string]string{"instance_status": "UP", "zone": "b"})
	if same(a, c) || c["zone"] != "b" {
		t.Errorf("different metadata shared: %v", c)
	}
	// Separators inside keys or values must not make two maps look equal.
	x := n.intern(map[string]string{"a\x00b": "c"})
	y := n.intern(map[string]string{"a": "b\x00c"})
	if same(x, y) || y["a"] != "b\x00c" {
		t.Errorf("%q and %q shared", x, y)
	}
	if got := n.intern(nil); got != nil {
		t.Errorf("nil metadata became %v", got)
	}
}

func TestInternerIsBounded(t *testing.T) {
	n := newInterner()
	for i := range maxInterned + 10 {
		n.intern(map[string]string{"id": fmt.Sprint(i)})
	}
	if len(n.m) != maxInterned {
		t.Fatalf("kept %d maps, want at most %d", len(n.m), maxInterned)
	}
	md := map[string]string{"id": "new"}
	if got := n.intern(md); !same(got, md) {
		t.Error("a map not interned (table full) was not returned as is")
	}
	old := n.intern(map[string]string{"id": "1"})
	if old["id"] != "1" {
		t.Errorf("got %v", old)
	}
}
