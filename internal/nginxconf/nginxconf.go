// Package nginxconf holds the mechanics of running a private nginx (for
// internal/harness, whose one template serves bench's proxy benchmark and
// the demo's nginx mode): finding the binary, reading which optional
// modules it has, the configuration lines that keep every path nginx
// writes inside one directory, and writing and checking nginx.conf.
package nginxconf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/procgroup"
)

// timeout bounds `nginx -V` and `nginx -t`.
const timeout = 10 * time.Second

// Find returns the nginx binary from PATH or /usr/sbin (not on a normal
// user's PATH on Debian); "" when there is none.
func Find() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// Modules says which optional modules with a temp path an nginx binary
// has: nginx creates every temp path at start, so each must point into the
// prefix directory when the module is there, and must not be named when
// it is not.
type Modules struct {
	FastCGI, UWSGI, SCGI bool
}

// ParseModules reads `nginx -V` output: the three modules are built in
// unless configured --without them.
func ParseModules(versionOutput string) Modules {
	return Modules{
		FastCGI: !strings.Contains(versionOutput, "--without-http_fastcgi_module"),
		UWSGI:   !strings.Contains(versionOutput, "--without-http_uwsgi_module"),
		SCGI:    !strings.Contains(versionOutput, "--without-http_scgi_module"),
	}
}

// ReadModules runs `bin -V` (bounded by a timeout) and parses its output
// with [ParseModules].
func ReadModules(ctx context.Context, bin string) (Modules, error) {
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(vctx, bin, "-V").CombinedOutput()
	if err != nil {
		return Modules{}, fmt.Errorf("nginx -V: %w", err)
	}
	return ParseModules(string(out)), nil
}

// Lines are the configuration lines that put every file nginx writes
// under dir, for a template to place.
type Lines struct {
	// Main goes in the main context: the pid file and the error log
	// (dir/nginx.pid, dir/error.log at level warn). No trailing newline.
	Main string
	// HTTP goes in the http block, indented by four spaces: the client
	// body and proxy temp paths, and those of the modules present
	// (dir/client_body, dir/proxy, dir/fastcgi, dir/uwsgi, dir/scgi).
	// No trailing newline.
	HTTP string
}

// Render returns the [Lines] for prefix dir and an nginx with modules m.
func Render(dir string, m Modules) Lines {
	main := "pid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log warn;"
	http := []string{
		"    client_body_temp_path " + dir + "/client_body;",
		"    proxy_temp_path " + dir + "/proxy;",
	}
	if m.FastCGI {
		http = append(http, "    fastcgi_temp_path "+dir+"/fastcgi;")
	}
	if m.UWSGI {
		http = append(http, "    uwsgi_temp_path "+dir+"/uwsgi;")
	}
	if m.SCGI {
		http = append(http, "    scgi_temp_path "+dir+"/scgi;")
	}
	return Lines{Main: main, HTTP: strings.Join(http, "\n")}
}

// Args are nginx's command-line arguments to run confPath with prefix dir,
// logging to errLog until the configuration is read (-e; Debian's default
// is a system path).
func Args(dir, confPath, errLog string) []string {
	return []string{"-p", dir + "/", "-e", errLog, "-c", confPath}
}

// Prepare creates dir, writes conf to dir/nginx.conf and checks it with
// `bin -t -q` (bounded by a timeout, under ctx) with the [Args] nginx is
// then to be run with. It returns the configuration's path and the error
// log dir/error.log, which a conf rendered with [Render] also logs to.
// The error of a failed check carries nginx's output.
func Prepare(ctx context.Context, bin, dir, conf string) (confPath, errLog string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("nginx dir: %w", err)
	}
	confPath = filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", "", fmt.Errorf("writing nginx.conf: %w", err)
	}
	errLog = filepath.Join(dir, "error.log")
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	check := procgroup.CommandContext(tctx, bin, append([]string{"-t", "-q"}, Args(dir, confPath, errLog)...)...)
	if out, err := check.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("nginx -t: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return confPath, errLog, nil
}
