package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

// StatusText is the reason phrase of a status code.
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status"
}

// Errors of body framing.
var (
	ErrChunk     = bad("malformed chunked body")
	ErrTrailers  = bad("malformed or too large trailers")
	errChunkSize = bad("chunk size too large")
)

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4096

// ReadChunkHeader reads a chunk-size line (RFC 9112 §7.1): hexadecimal
// size, optional extensions (ignored), CRLF. A bare LF, a size that is
// not hexadecimal or does not fit 60 bits, or a line longer than 4 KiB is
// ErrChunk. A read error of br is returned as it is.
func ReadChunkHeader(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, ErrChunk
		}
		if errors.Is(err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if len(line) > maxChunkLine || len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, ErrChunk
	}
	line = line[:len(line)-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		for _, c := range line[i:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, ErrChunk
			}
		}
		line = trimOWS(line[:i])
	}
	if len(line) == 0 {
		return 0, ErrChunk
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, ErrChunk
		}
		if n >= 1<<56 {
			return 0, errChunkSize
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

// ReadCRLF consumes the CRLF that ends chunk data; anything else is
// ErrChunk.
func ReadCRLF(br *bufio.Reader) error {
	b, err := br.Peek(2)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return ErrChunk
	}
	br.Discard(2)
	return nil
}

// ReadTrailers reads the trailer section after the last chunk up to and
// including its empty line, appending the field lines (each ending in
// CRLF, checked like header fields) to dst. At most max bytes.
func ReadTrailers(br *bufio.Reader, dst []byte, max int) ([]byte, error) {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return dst, ErrTrailers
			}
			if errors.Is(err, io.EOF) {
				return dst, io.ErrUnexpectedEOF
			}
			return dst, err
		}
		if total += len(line); total > max {
			return dst, ErrTrailers
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return dst, ErrChunk
		}
		l := line[:len(line)-2]
		if len(l) == 0 {
			return dst, nil
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !isToken(l[:colon]) || !validValue(l[colon+1:]) {
			return dst, ErrTrailers
		}
		dst = append(dst, line...)
	}
}

// AppendChunkHeader appends the size line of a chunk of n bytes.
func AppendChunkHeader(dst []byte, n int) []byte {
	const hex = "0123456789abcdef"
	var b [16]byte
	i := len(b)
	for {
		i--
		b[i] = hex[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	dst = append(dst, b[i:]...)
	return append(dst, '\r', '\n')
}

// CopyN copies n bytes from src to dst without an intermediate buffer:
// from src's buffer straight into dst. It returns how many bytes were
// copied, and either the error of reading src (io.ErrUnexpectedEOF when
// src ended early) or that of writing dst, so the caller knows which side
// failed. With flush set, dst is flushed whenever src has nothing more
// buffered (streaming: the peer sees data as soon as it arrives).
func CopyN(dst *bufio.Writer, src *bufio.Reader, n int64, flush bool) (written int64, readErr, writeErr error) {
	for written < n {
		if src.Buffered() == 0 {
			if readErr, writeErr := refill(dst, src, flush); readErr != nil || writeErr != nil {
				if errors.Is(readErr, io.EOF) {
					readErr = io.ErrUnexpectedEOF
				}
				return written, readErr, writeErr
			}
		}
		k := src.Buffered()
		if rest := n - written; int64(k) > rest {
			k = int(rest)
		}
		b, _ := src.Peek(k)
		m, err := dst.Write(b)
		src.Discard(m)
		written += int64(m)
		if err != nil {
			return written, nil, err
		}
	}
	return written, nil, nil
}

// refill, for a src with nothing buffered, flushes dst (with flush set)
// so the peer sees what it has, then waits for src's next byte. It returns
// the error of either side. (Callers test Buffered first: the common case
// costs no call.)
func refill(dst *bufio.Writer, src *bufio.Reader, flush bool) (readErr, writeErr error) {
	if flush {
		if err := dst.Flush(); err != nil {
			return nil, err
		}
	}
	_, err := src.Peek(1)
	return err, nil
}

// CopyToEOF copies src to dst until src ends (io.EOF, not an error),
// flushing dst whenever src has nothing buffered when flush is set. With
// chunk set, it writes the data as chunks (not the last chunk).
func CopyToEOF(dst *bufio.Writer, src *bufio.Reader, flush, chunk bool, scratch []byte) (written int64, readErr, writeErr error) {
	for {
		if src.Buffered() == 0 {
			if readErr, writeErr := refill(dst, src, flush); readErr != nil || writeErr != nil {
				if errors.Is(readErr, io.EOF) {
					return written, nil, nil
				}
				return written, readErr, writeErr
			}
		}
		b, _ := src.Peek(src.Buffered())
		if chunk {
			if _, err := dst.Write(AppendChunkHeader(scratch[:0], len(b))); err != nil {
				return written, nil, err
			}
		}
		m, err := dst.Write(b)
		src.Discard(m)
		written += int64(m)
		if err == nil && chunk {
			_, err = dst.WriteString("\r\n")
		}
		if err != nil {
			return written, nil, err
		}
	}
}

// ErrPathAboveRoot is the error of CleanPath for a path whose dot-segments
// climb above "/".
var ErrPathAboveRoot = bad("path climbs above the root")

// CleanPath removes the dot-segments of a request path (RFC 3986 §5.2.4),
// as nginx does before matching locations: "." and ".." segments, also
// when percent-encoded ("%2e", "%2E"), so a route prefix cannot be
// escaped with "/orders/../admin". It returns p itself when p has none
// (the common case, no copy), else the cleaned path appended to dst[:0].
// Other percent-encodings stay as they are. A ".." above the root is
// ErrPathAboveRoot.
func CleanPath(dst, p []byte) ([]byte, error) {
	if !hasDotSegment(p) {
		return p, nil
	}
	out := dst[:0]
	i := 0
	for i < len(p) {
		// p[i] == '/': a segment follows up to the next '/'.
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		last := j == len(p)
		switch dots(seg) {
		case 1:
			if last {
				out = append(out, '/')
			}
		case 2:
			k := bytes.LastIndexByte(out, '/')
			if k < 0 {
				return nil, ErrPathAboveRoot
			}
			out = out[:k]
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, p[i:j]...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out, nil
}

// hasDotSegment reports whether some segment of p may be a dot-segment.
func hasDotSegment(p []byte) bool {
	for i := 0; i+1 < len(p); i++ {
		if p[i] == '/' && (p[i+1] == '.' || p[i+1] == '%') {
			j := i + 1
			for j < len(p) && p[j] != '/' {
				j++
			}
			if dots(p[i+1:j]) > 0 {
				return true
			}
		}
	}
	return false
}

// dots returns 1 for a "." segment, 2 for "..", 0 otherwise, with
// percent-encoded dots.
func dots(seg []byte) int {
	n := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return 0
		}
		if n++; n > 2 {
			return 0
		}
	}
	return n
}
