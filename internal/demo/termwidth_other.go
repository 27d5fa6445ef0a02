//go:build !linux && !darwin

package demo

import "io"

// termWidth is unknown here.
func termWidth(io.Writer) int { return 0 }
