package cli

import (
	"strings"
	"testing"
)

func TestParseServers(t *testing.T) {
	got, err := parseServers(" 127.0.0.1:2181, 127.0.0.1:2182 ,")
	if err != nil || strings.Join(got, ",") != "127.0.0.1:2181,127.0.0.1:2182" {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := parseServers(""); got != nil || err != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
}
