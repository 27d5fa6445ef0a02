package bench

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/zkgate/zkgate/internal/procgroup"
)

// Helpers are started with procgroup (own process group, killed with the
// bench on Linux); command is procgroup.CommandContext.
var command = procgroup.CommandContext

// exitTail is how many log lines exitError quotes.
const exitTail = 5

// startProc starts cmd on the spawner and reaps it in the background.
// When logPath is set, whichever of stdout and stderr the caller left nil
// goes to that file.
func startProc(sp *procgroup.Spawner, name string, cmd *exec.Cmd, logPath string) (*procgroup.Proc, error) {
	var logFile *os.File
	if logPath != "" && (cmd.Stdout == nil || cmd.Stderr == nil) {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		logFile = f
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if logFile == nil {
		return sp.Spawn(name, cmd, logPath, nil)
	}
	return sp.Spawn(name, cmd, logPath, logFile)
}
