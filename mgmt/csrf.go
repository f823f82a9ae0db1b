package mgmt

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Cross-site request forgery. A browser attaches the credentials it holds for the API's origin
// (Basic credentials it cached after a password prompt) to requests that other web sites make
// it send: HTML forms (POST with enctype text/plain, application/x-www-form-urlencoded or
// multipart/form-data) and fetch(..., {mode: "no-cors"}) need no CORS preflight. The API
// defends in three layers:
//
//   - a state-changing request (any method but GET, HEAD and OPTIONS) whose Origin header, or
//     without one whose Referer, names another origin than the one it was sent to is refused
//     with 403, whatever its content type, unless that origin is listed in Config.CORSOrigins;
//   - a write's body must be application/json (415 otherwise, and for a POST without one):
//     a browser sends JSON to another origin only after a CORS preflight, which fails unless
//     the origin is listed;
//   - no CORS headers at all unless origins are configured, so no other site may read the
//     API's answers or pass its preflight.
//
// The dashboard itself never lets the browser cache credentials: it signs in with its own
// form and sends an Authorization header from script (see dashboard.go).

// stateChanging reports whether method may change the broker's state.
func stateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// requestOrigin returns the origin the request comes from: its Origin header or, without one,
// the scheme and host of its Referer ("" when it has neither).
func requestOrigin(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" {
		return o
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return ""
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return "null" // unreadable: treated as foreign
	}
	return u.Scheme + "://" + u.Host
}

// sameOrigin reports whether origin names the host (and port) the request was sent to. The
// scheme is not compared: behind a TLS-terminating proxy the request arrives as plain HTTP
// while the page's origin is https. Default ports are ignored on both sides.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return false // includes "null" (sandboxed frames, file: pages)
	}
	return strings.EqualFold(stripDefaultPort(u.Host, u.Scheme), stripDefaultPort(r.Host, u.Scheme))
}

func stripDefaultPort(host, scheme string) string {
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	}
	return host
}

// corsAllowed reports whether origin is listed in Config.CORSOrigins.
func (s *Server) corsAllowed(origin string) bool {
	return origin != "" && (slices.Contains(s.cfg.CORSOrigins, "*") || slices.Contains(s.cfg.CORSOrigins, origin))
}

// refuseCrossSite answers 403 to a state-changing request from another origin and reports
// whether it did.
func (s *Server) refuseCrossSite(w http.ResponseWriter, r *http.Request) bool {
	if !stateChanging(r.Method) {
		return false
	}
	o := requestOrigin(r)
	if o == "" || sameOrigin(o, r) || s.corsAllowed(o) {
		return false
	}
	s.log.Warn().Str("origin", o).Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
		Msg("cross-origin request refused")
	writeError(w, http.StatusForbidden, "forbidden", "cross-origin request refused: origin "+o+" is not allowed (see --http-cors-origins)")
	return true
}

// corsPreflight adds CORS headers for an allowed origin and answers its preflight (OPTIONS
// with Access-Control-Request-Method), reporting whether the request is done. Nothing happens
// without configured origins.
func (s *Server) corsPreflight(w http.ResponseWriter, r *http.Request) bool {
	if len(s.cfg.CORSOrigins) == 0 {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if !s.corsAllowed(o) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Allow-Credentials", "true")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	h.Set("Access-Control-Max-Age", "1800") // RabbitMQ's management.cors.max_age default
	w.WriteHeader(http.StatusNoContent)
	return true
}

// jsonBody checks a write's content type: a POST, or any write with a body, must say
// application/json. It writes 415 and returns false otherwise.
func jsonBody(w http.ResponseWriter, r *http.Request) bool {
	if !stateChanging(r.Method) {
		return true
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.Method != http.MethodPost && r.ContentLength == 0 {
		return true // DELETE, or PUT without a body (curl -X PUT .../api/vhosts/v)
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return true
	}
	writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "request body must be application/json")
	return false
}
