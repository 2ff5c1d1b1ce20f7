package webui

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"
)

// CSP is the Content-Security-Policy of every dashboard response: scripts,
// styles and API calls come from the hub only, images from the hub or
// data: URLs. No inline script or style is allowed.
const CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"

//go:embed assets
var assets embed.FS

// files maps each served path to its embedded file and content type.
// Paths not listed here are not the dashboard's (the API answers them).
var files = map[string]struct{ name, contentType string }{
	"/":           {"assets/index.html", "text/html; charset=utf-8"},
	"/index.html": {"assets/index.html", "text/html; charset=utf-8"},
	"/app.js":     {"assets/app.js", "text/javascript; charset=utf-8"},
	"/style.css":  {"assets/style.css", "text/css; charset=utf-8"},
}

// Paths returns the URL paths the dashboard serves.
func Paths() []string {
	out := make([]string, 0, len(files))
	for p := range files {
		out = append(out, p)
	}
	return out
}

// Handler serves the dashboard's files at the paths Paths returns and 404
// for any other path. index.html is revalidated on every load (no-cache)
// so that a new hub binary's page is picked up at once; the script and
// stylesheet are small and revalidated too, since they carry no version
// in their names.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, err := assets.ReadFile(f.name)
		if err != nil {
			http.Error(w, "reading embedded "+f.name+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// Mount adds the dashboard's routes (GET and HEAD of each of Paths) to a
// gin engine; it fits httpapi.Options.Extra. It mounts exact paths only,
// so /api/v1, /tuf, /metrics and /healthz, and the API's JSON 404 for
// unknown paths, are untouched.
func Mount(r *gin.Engine) {
	h := gin.WrapH(Handler())
	for p := range files {
		r.GET(p, h)
		r.HEAD(p, h)
	}
}

// Assets returns the embedded files, rooted at the directory that holds
// index.html; tests scan them.
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the directory is embedded; it cannot be missing
	}
	return sub
}
