package bench

import (
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/nginxconf"
)

func TestRenderNginxConf(t *testing.T) {
	conf, err := renderNginxConf(NginxConfig{
		Dir: "/tmp/b/nginx", Listen: "127.0.0.1:4100", Backend: "127.0.0.1:4200", Prefix: "/bench/",
		Modules: nginxconf.Modules{FastCGI: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker_processes auto;",
		"daemon off;",
		"pid /tmp/b/nginx/nginx.pid;",
		"error_log /tmp/b/nginx/error.log warn;",
		"access_log off;",
		"client_body_temp_path /tmp/b/nginx/client_body;",
		"proxy_temp_path /tmp/b/nginx/proxy;",
		"fastcgi_temp_path /tmp/b/nginx/fastcgi;",
		"server 127.0.0.1:4200;",
		"keepalive 64;",
		"listen 127.0.0.1:4100;",
		"location /bench/ {",
		"proxy_pass http://bench_backend/;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	for _, absent := range []string{"uwsgi_temp_path", "scgi_temp_path", "/var/", "/etc/"} {
		if strings.Contains(conf, absent) {
			t.Errorf("nginx.conf has %q:\n%s", absent, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
}

func TestRenderNginxConfOptions(t *testing.T) {
	conf, err := renderNginxConf(NginxConfig{Dir: "/d", Listen: "127.0.0.1:1", Backend: "127.0.0.1:2", Prefix: "/p/", Workers: "2", Keepalive: 16})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, "worker_processes 2;") || !strings.Contains(conf, "keepalive 16;") {
		t.Errorf("workers or keepalive not applied:\n%s", conf)
	}
	bad := []NginxConfig{
		{Listen: "127.0.0.1:1", Backend: "127.0.0.1:2", Prefix: "/p/"},
		{Dir: "/d", Listen: "127.0.0.1:1", Backend: "127.0.0.1:2", Prefix: "p/"},
		{Dir: "/d", Listen: "127.0.0.1:1", Backend: "127.0.0.1:2", Prefix: "/p/", Workers: "many"},
		{Dir: "/d", Listen: "127.0.0.1:1", Backend: "127.0.0.1:2", Prefix: "/p/", Workers: "0"},
	}
	for _, c := range bad {
		if _, err := renderNginxConf(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
