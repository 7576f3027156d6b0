package monitor

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// RequireToken wraps h so that the API (/api/...) and /metrics answer only requests that carry
// "Authorization: Bearer <token>"; the dashboard's page and assets, which hold no data, and
// /healthz (for probes) stay open. The comparison takes the same time whatever the token sent.
func RequireToken(h http.Handler, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if ok {
			sum := sha256.Sum256([]byte(got))
			if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="gpujobs monitor"`)
		msg := "this monitor needs a token: send Authorization: Bearer <token> (monitor tail and starter: --token or MONITOR_TOKEN)"
		if ok {
			msg = "wrong token"
		}
		writeError(w, http.StatusUnauthorized, errors.New(msg))
	})
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// checkExposure refuses to serve beyond loopback without authentication: an address whose host
// is empty, a wildcard, a name other than localhost, or an IP that is not loopback reaches
// other hosts.
func checkExposure(addr, token string, insecure bool) error {
	if token != "" || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: want host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--addr %s serves beyond this host, and the API (results, job logs) would answer anyone: set a token (--token, MONITOR_TOKEN or MONITOR_TOKEN_FILE), or --insecure-no-auth behind a proxy that authenticates", addr)
}
