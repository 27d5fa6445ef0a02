package bench

import "github.com/zkgate/zkgate/internal/procgroup"

// Helpers are started with procgroup (own process group, killed with the
// bench on Linux, and when the context of their start ends); command is
// procgroup.CommandContext.
var command = procgroup.CommandContext

// exitTail is how many log lines exitError quotes.
const exitTail = 5
