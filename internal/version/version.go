// Package version holds the build version of zkgate.
package version

// Version is set at build time with -ldflags "-X github.com/zkgate/zkgate/internal/version.Version=…".
// It is a var only so the linker can set it; nothing assigns it at run time.
var Version = "0.1.0-dev"
