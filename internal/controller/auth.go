package controller

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// authenticator checks bearer tokens. Tokens are compared as SHA-256
// digests in constant time, against every configured token, so neither a
// token's content nor its length leaks through timing.
type authenticator struct {
	write []tokenEntry // controller.tokens: every call
	read  []tokenEntry // controller.read_tokens: GET calls only
}

type tokenEntry struct {
	digest [sha256.Size]byte
	// identity names the token in marks and the audit trail without
	// revealing it: "token:" and the first 8 hex digits of its digest.
	identity string
}

func newAuthenticator(write, read []string) *authenticator {
	mk := func(ts []string) []tokenEntry {
		out := make([]tokenEntry, 0, len(ts))
		for _, t := range ts {
			d := sha256.Sum256([]byte(t))
			out = append(out, tokenEntry{digest: d, identity: "token:" + hex.EncodeToString(d[:4])})
		}
		return out
	}
	return &authenticator{write: mk(write), read: mk(read)}
}

// match returns the identity of the presented token among entries.
func match(entries []tokenEntry, d [sha256.Size]byte) (string, bool) {
	found := ""
	ok := 0
	for _, e := range entries {
		if subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1 {
			found = e.identity
			ok = 1
		}
	}
	return found, ok == 1
}

// check authorizes r. Mutating calls need a write token; GET calls need a
// read or write token when read tokens are configured and nothing
// otherwise. It returns the caller's identity ("anonymous" for open GETs)
// and 0, or 401 (no usable credentials) or 403 (a token that is not
// accepted here).
func (a *authenticator) check(r *http.Request, mutating bool) (string, int) {
	if !mutating && len(a.read) == 0 {
		return "anonymous", 0
	}
	h := r.Header.Get("Authorization")
	scheme, token, found := strings.Cut(h, " ")
	if h == "" || !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", http.StatusUnauthorized
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if id, ok := match(a.write, d); ok {
		return id, 0
	}
	if !mutating {
		if id, ok := match(a.read, d); ok {
			return id, 0
		}
	}
	return "", http.StatusForbidden
}
