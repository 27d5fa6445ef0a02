// Package harnesstest helps the end-to-end tests of the benchmarks, the
// demo, the CLI and rollouts: building zkgate, rendering and checking
// configurations, reading reports.
package harnesstest

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
)

// BuildZkgate builds the zkgate binary (cmd/zkgate) into a temporary
// directory of t and returns its path: the processes a benchmark or the
// demo starts run it, and a test binary is not zkgate. The test fails
// when the build does.
func BuildZkgate(t testing.TB) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "zkgate")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/zkgate/zkgate/cmd/zkgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Table returns what report's WriteTable writes; t fails when it fails.
func Table(t testing.TB, report interface{ WriteTable(io.Writer) error }) string {
	t.Helper()
	var b strings.Builder
	if err := report.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Contains fails t, without stopping it, for each of want that out (a
// table, a help text, …, called what) lacks.
func Contains(t testing.TB, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// JSONFile has report write its JSON file at path (report.json in a
// temporary directory of t when path is "") and returns the file's
// content; t fails when writing or reading fails.
func JSONFile(t testing.TB, report interface{ WriteJSON(string) error }, path string) []byte {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "report.json")
	}
	if err := report.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// GatewayConfig parses yaml as zkgate reads its configuration file and
// checks it as `zkgate gateway` does; t fails, quoting yaml, when either
// fails.
func GatewayConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	if err := cfg.ValidateGateway(); err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	return cfg
}
