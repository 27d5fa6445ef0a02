package config

import (
	"strings"
	"testing"
	"time"
)

func TestDepartedWindow(t *testing.T) {
	c, err := Parse([]byte("controller:\n  tokens: [t]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Controller.DepartedWindow != DefaultDepartedWindow || DefaultDepartedWindow != DefaultStaleAfter {
		t.Errorf("default departed_window %v, want %v (the gateways' default stale_after)", c.Controller.DepartedWindow, DefaultStaleAfter)
	}
	c, err = Parse([]byte("controller:\n  tokens: [t]\n  departed_window: 90s\n"))
	if err != nil || c.Controller.DepartedWindow != 90*time.Second || c.ValidateController() != nil {
		t.Fatalf("departed_window 90s: %v %v", c, err)
	}
	c, err = Parse([]byte("controller:\n  tokens: [t]\n  departed_window: -1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateController(); err == nil || !strings.Contains(err.Error(), "departed_window") {
		t.Errorf("negative departed_window: %v", err)
	}
}
