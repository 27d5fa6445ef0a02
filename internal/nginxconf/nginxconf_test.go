package nginxconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseModules(t *testing.T) {
	full := "configure arguments: --prefix=/usr/share/nginx --with-http_ssl_module"
	if got := ParseModules(full); got != (Modules{true, true, true}) {
		t.Errorf("full build: %+v", got)
	}
	light := "configure arguments: --without-http_uwsgi_module --without-http_scgi_module"
	if got := ParseModules(light); got != (Modules{FastCGI: true}) {
		t.Errorf("light build: %+v", got)
	}
}

func TestRender(t *testing.T) {
	l := Render("/d", Modules{UWSGI: true})
	if want := "pid /d/nginx.pid;\nerror_log /d/error.log warn;"; l.Main != want {
		t.Errorf("Main = %q, want %q", l.Main, want)
	}
	want := "    client_body_temp_path /d/client_body;\n" +
		"    proxy_temp_path /d/proxy;\n" +
		"    uwsgi_temp_path /d/uwsgi;"
	if l.HTTP != want {
		t.Errorf("HTTP = %q, want %q", l.HTTP, want)
	}
	all := Render("/d", Modules{true, true, true}).HTTP
	for _, p := range []string{"fastcgi_temp_path /d/fastcgi;", "uwsgi_temp_path /d/uwsgi;", "scgi_temp_path /d/scgi;"} {
		if !strings.Contains(all, p) {
			t.Errorf("all modules: lacks %q:\n%s", p, all)
		}
	}
}

func TestArgs(t *testing.T) {
	got := strings.Join(Args("/d", "/d/nginx.conf", "/d/error.log"), " ")
	if want := "-p /d/ -e /d/error.log -c /d/nginx.conf"; got != want {
		t.Errorf("Args = %q, want %q", got, want)
	}
}

// TestPrepare checks Prepare against the real nginx: a configuration built
// from Render passes `nginx -t` as a normal user (nothing outside dir),
// and a broken one fails with nginx's message.
func TestPrepare(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not on PATH")
	}
	bin := Find()
	ctx := context.Background()
	mods, err := ReadModules(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "nginx")
	l := Render(dir, mods)
	conf := "daemon off;\nmaster_process off;\n" + l.Main + "\nevents {}\nhttp {\n    access_log off;\n" + l.HTTP + "\n}\n"
	confPath, errLog, err := Prepare(ctx, bin, dir, conf)
	if err != nil {
		t.Fatalf("Prepare: %v\n%s", err, conf)
	}
	if confPath != filepath.Join(dir, "nginx.conf") || errLog != filepath.Join(dir, "error.log") {
		t.Errorf("paths: %q, %q", confPath, errLog)
	}
	if b, err := os.ReadFile(confPath); err != nil || string(b) != conf {
		t.Errorf("nginx.conf not written as given (%v)", err)
	}

	_, _, err = Prepare(ctx, bin, dir, conf+"bogus_directive on;\n")
	if err == nil || !strings.Contains(err.Error(), "bogus_directive") {
		t.Errorf("broken conf: err = %v, want nginx's message naming the directive", err)
	}
}
