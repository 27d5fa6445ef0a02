// Package dashboard serves the controller's web dashboard under /ui/: a
// static page (embedded in the binary) that reads the controller's JSON API
// from the browser and shows every service, instance and gateway, the
// per-gateway drain state and the audit trail, with drain and undrain
// buttons. It holds no state and calls nothing itself: the API enforces
// tokens, and the page sends the token the operator typed.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard. Mount it at "/ui/": it strips that prefix.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServer(http.FS(sub))
	return http.StripPrefix("/ui", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// frame-ancestors and X-Frame-Options: no other page may frame the
		// dashboard (clickjacking of its drain buttons).
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "" {
			http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(w, r)
	}))
}
