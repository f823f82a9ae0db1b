package mgmt

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The dashboard is a read-only web UI: plain HTML, CSS and JavaScript embedded in the binary,
// no build step. Like RabbitMQ's management UI, its files are public and every figure it shows
// comes from the authenticated /api/ endpoints, which the page polls with fetch().
//
// Signing in never goes through the browser's own Basic-auth prompt: a browser caches what
// it was given there for the origin and attaches it to every later request, including those
// another web site makes it send (cross-site request forgery). The page has its own sign-in
// form; its script keeps the Authorization value in sessionStorage and sends it explicitly on
// each call (fetch with credentials: 'omit' and X-Requested-With, so a 401 carries no
// challenge, see auth.go); Sign out forgets it. The API's own defences against cross-site
// requests are in csrf.go.
//
//	GET /              ui/index.html
//	GET /ui/{file}     ui/dashboard.css, ui/dashboard.js
//	GET /ui/login      302 to / (the sign-in form is on the page; kept for old links)

//go:embed ui
var uiFiles embed.FS

// uiAsset is one embedded file with its validator, computed once.
type uiAsset struct {
	body  []byte
	etag  string
	ctype string
}

// uiTypes are the dashboard's content types, fixed here rather than read from the host's
// mime.types, which may differ between machines.
var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// uiAssets reads every embedded file. The files are part of the binary, so failing to read
// one is our own broken build, not a runtime condition.
func uiAssets() map[string]uiAsset {
	out := map[string]uiAsset{}
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype, ok := uiTypes[path.Ext(p)]
		if !ok {
			ctype = "application/octet-stream"
		}
		out[path.Base(p)] = uiAsset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	if err != nil {
		panic("mgmt: embedded dashboard: " + err.Error())
	}
	return out
}

// dashboardCSP allows only the dashboard's own files and API: no inline script or style, no
// framing (clickjacking), no plugins.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardRoutes registers the dashboard's files and the /ui/login redirect on m.
func (s *Server) dashboardRoutes(m *http.ServeMux) {
	assets := uiAssets()
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		a, ok := assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache") // revalidate: a new binary may ship new files
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	}
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	m.HandleFunc("GET /ui/{file}", func(w http.ResponseWriter, r *http.Request) {
		if f := r.PathValue("file"); f != "index.html" {
			serve(w, r, f)
			return
		}
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/", http.StatusFound)
	})
}
