package cli

import (
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// escapeWriter passes text to w with every character that could drive a
// terminal or hide text escaped (README.md, Commands: "terminal output has
// control characters escaped"): C0 controls other than newline and tab,
// DEL, C1 controls, bidirectional overrides and line separators become
// \uXXXX (also a valid escape inside the JSON strings of --json output),
// bytes that are not UTF-8 become \xNN. Names and addresses read from
// ZooKeeper or the API may hold anything; what the commands print must not
// be able to clear the screen, move the cursor or reorder a line.
//
// It is safe for concurrent use. A character split across two writes is
// held back until its end arrives, or until Flush.
type escapeWriter struct {
	mu      sync.Mutex
	w       io.Writer
	pending []byte // the start of a character a write ended in
	buf     []byte
}

func newEscapeWriter(w io.Writer) *escapeWriter { return &escapeWriter{w: w} }

// Write implements io.Writer; it reports len(p) when the escaped text was
// written.
func (e *escapeWriter) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := p
	if len(e.pending) > 0 {
		in = append(e.pending, p...)
		e.pending = nil
	}
	// Hold back an incomplete (but possibly valid) last character.
	cut := len(in)
	for i := len(in) - 1; i >= 0 && i >= len(in)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(in[i]) {
			if !utf8.FullRune(in[i:]) {
				cut = i
			}
			break
		}
	}
	e.pending = append(e.pending[:0], in[cut:]...)
	e.buf = appendEscaped(e.buf[:0], in[:cut])
	if _, err := e.w.Write(e.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what a write left pending (an incomplete character, escaped
// byte by byte).
func (e *escapeWriter) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) == 0 {
		return nil
	}
	var b []byte
	for _, c := range e.pending {
		b = fmt.Appendf(b, `\x%02x`, c)
	}
	e.pending = nil
	_, err := e.w.Write(b)
	return err
}

// appendEscaped appends s to b with the characters escapeWriter escapes
// escaped.
func appendEscaped(b, s []byte) []byte {
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && n <= 1:
			b = fmt.Appendf(b, `\x%02x`, s[0])
		case mustEscape(r):
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, s[:n]...)
		}
		s = s[n:]
	}
	return b
}

// Escape returns s with the characters escapeWriter escapes escaped, for
// text that is not printed through one.
func Escape(s string) string { return string(appendEscaped(nil, []byte(s))) }

func mustEscape(r rune) bool {
	switch {
	case r == '\n', r == '\t':
		return false
	case r < 0x20, r >= 0x7f && r <= 0x9f: // C0 (with CR), DEL, C1
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	}
	return false
}
