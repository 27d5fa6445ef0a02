// Package h1 reads and writes HTTP/1.1 messages (RFC 9112) for the
// gateway's proxy: request and response heads parsed into reusable
// structs whose byte slices alias one buffer, strict body framing
// (Content-Length, chunked), and zero-copy body copying between buffered
// connections. It allocates nothing per message once its buffers have
// grown.
//
// Parsing is strict where a disagreement between two parsers of the same
// bytes could be exploited (request smuggling): a request with both
// Content-Length and Transfer-Encoding, with two Content-Length headers,
// with a transfer coding other than chunked, with an obsolete line folding
// or with whitespace before a header's colon is refused; chunk framing
// must use CRLF. Heads may end their lines with a bare LF (as Go's and
// nginx's servers accept): the proxy never forwards a head as it came, it
// writes its own.
package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Error is a message the peer got wrong. Status is the response a server
// should answer a request with (400, 431, 501, 505).
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func bad(msg string) *Error { return &Error{Status: 400, Msg: msg} }

// Errors that are answered without a message of their own.
var (
	ErrHeadTooLarge = &Error{Status: 431, Msg: "request head too large"}
	errVersion      = &Error{Status: 505, Msg: "HTTP version not supported"}
	errCoding       = &Error{Status: 501, Msg: "transfer coding not supported"}
)

// Field is one header field. Name and Value alias the message's buffer:
// they are valid until the next Read.
type Field struct {
	Name, Value []byte
}

// maxConnTokens bounds the header names a Connection header may list.
const maxConnTokens = 16

// head is what requests and responses share.
type head struct {
	// Fields are the header fields in order, as received (values without
	// surrounding whitespace), Content-Length and Transfer-Encoding
	// included.
	Fields []Field
	// ContentLength is the body's length, -1 when the message has no
	// Content-Length header.
	ContentLength int64
	// Chunked: the body is chunked (Transfer-Encoding: chunked).
	Chunked bool
	// Minor is the HTTP minor version, 0 or 1.
	Minor int
	// KeepAlive: the peer lets the connection be reused after this
	// message (HTTP/1.1 without Connection: close, or HTTP/1.0 with
	// Connection: keep-alive).
	KeepAlive bool
	// Upgrade is the Upgrade header's value when the Connection header
	// lists "upgrade", else nil.
	Upgrade []byte

	connUpgrade bool
	connTokens  [maxConnTokens][]byte
	nConnTokens int
	upgradeVal  []byte
	buf         []byte
}

func (h *head) reset() {
	h.Fields = h.Fields[:0]
	h.ContentLength = -1
	h.Chunked = false
	h.Minor = 1
	h.KeepAlive = true
	h.Upgrade = nil
	h.connUpgrade = false
	h.nConnTokens = 0
	h.upgradeVal = nil
	h.buf = h.buf[:0]
}

// IsHopByHop reports whether a field must not be forwarded: the
// connection-specific fields of RFC 9110 §7.6.1 and every field the
// message's Connection header names.
func (h *head) IsHopByHop(name []byte) bool {
	if isStdHopByHop(name) {
		return true
	}
	for i := 0; i < h.nConnTokens; i++ {
		if bytes.EqualFold(h.connTokens[i], name) {
			return true
		}
	}
	return false
}

// Get returns the value of the first field named name (case-insensitive),
// or nil.
func (h *head) Get(name string) []byte {
	for i := range h.Fields {
		if equalFoldString(h.Fields[i].Name, name) {
			return h.Fields[i].Value
		}
	}
	return nil
}

func isStdHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFoldString(name, "te")
	case 7:
		return equalFoldString(name, "trailer") || equalFoldString(name, "upgrade")
	case 10:
		return equalFoldString(name, "connection") || equalFoldString(name, "keep-alive")
	case 16:
		return equalFoldString(name, "proxy-connection")
	case 17:
		return equalFoldString(name, "transfer-encoding")
	case 18:
		return equalFoldString(name, "proxy-authenticate")
	case 19:
		return equalFoldString(name, "proxy-authorization")
	}
	return false
}

// readStart reads the head (readLines) and returns its start line without
// the line end, and the index of the start line's '\n' in h.buf.
func (h *head) readStart(br *bufio.Reader, max int) (line []byte, eol int, err error) {
	if err := h.readLines(br, max); err != nil {
		return nil, 0, err
	}
	eol = bytes.IndexByte(h.buf, '\n')
	line = h.buf[:eol]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, eol, nil
}

// readLines reads a head (a start line and fields up to an empty line)
// into h.buf, at most max bytes.
func (h *head) readLines(br *bufio.Reader, max int) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return ErrHeadTooLarge
			}
			if errors.Is(err, io.EOF) && len(h.buf)+len(line) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if len(h.buf)+len(line) > max {
			return ErrHeadTooLarge
		}
		if len(h.buf) == 0 && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			continue // RFC 9112 §2.2: ignore empty lines before a request line
		}
		h.buf = append(h.buf, line...)
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return nil
		}
	}
}

// parseFields parses the field lines of h.buf after the start line (at
// offset off). isReq selects the strict request rules.
func (h *head) parseFields(off int, isReq bool) error {
	b := h.buf
	seenCL, seenTE, hasClose, hasKeepAlive := false, false, false, false
	for off < len(b) {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			return bad("malformed header")
		}
		line := b[off : off+end]
		off += end + 1
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("obsolete line folding in header")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return bad("malformed header line")
		}
		name := line[:colon]
		if !isToken(name) {
			return bad("invalid header name")
		}
		value := trimOWS(line[colon+1:])
		if !validValue(value) {
			return bad("invalid header value")
		}
		h.Fields = append(h.Fields, Field{Name: name, Value: value})
		switch len(name) {
		case 14:
			if !equalFoldString(name, "content-length") {
				break
			}
			n, ok := parseLength(value)
			if seenCL {
				if isReq || !ok || n != h.ContentLength {
					return bad("duplicate Content-Length")
				}
			}
			if !ok {
				return bad("invalid Content-Length")
			}
			seenCL = true
			h.ContentLength = n
		case 17:
			if !equalFoldString(name, "transfer-encoding") {
				break
			}
			if seenTE {
				return bad("duplicate Transfer-Encoding")
			}
			seenTE = true
			if !equalFoldString(value, "chunked") {
				return errCoding
			}
			h.Chunked = true
		case 10:
			if !equalFoldString(name, "connection") {
				break
			}
			for len(value) > 0 {
				var tok []byte
				if i := bytes.IndexByte(value, ','); i >= 0 {
					tok, value = trimOWS(value[:i]), value[i+1:]
				} else {
					tok, value = trimOWS(value), nil
				}
				switch {
				case len(tok) == 0:
				case equalFoldString(tok, "close"):
					hasClose = true
				case equalFoldString(tok, "keep-alive"):
					hasKeepAlive = true
				case equalFoldString(tok, "upgrade"):
					h.connUpgrade = true
				default:
					if h.nConnTokens == maxConnTokens {
						return bad("too many Connection options")
					}
					h.connTokens[h.nConnTokens] = tok
					h.nConnTokens++
				}
			}
		case 7:
			if equalFoldString(name, "upgrade") {
				h.upgradeVal = value
			}
		}
	}
	if seenTE && seenCL {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if seenTE && h.Minor == 0 && isReq {
		return bad("Transfer-Encoding in an HTTP/1.0 request")
	}
	if h.connUpgrade && len(h.upgradeVal) > 0 {
		h.Upgrade = h.upgradeVal
	}
	h.KeepAlive = !hasClose && (h.Minor == 1 || hasKeepAlive)
	return nil
}

// Request is a request head. Its zero value is ready for Read; reuse it
// for every request of a connection.
type Request struct {
	head
	// Method is the request method.
	Method []byte
	// Path is the path of the request target (origin-form, or the path of
	// an absolute-form target; "/" when that is empty), as received
	// (percent-encoded). Query is the query including its '?', or empty.
	Path, Query []byte
	// Host is the Host header, or the authority of an absolute-form
	// target (which replaces it).
	Host []byte
	// Expect100: the client sent Expect: 100-continue and waits for a
	// 100 Continue before sending its body.
	Expect100 bool
}

// Read reads and checks a request head from br, at most max bytes. The
// errors are *Error (answer Status and close the connection), or br's
// error (nothing to answer: the connection ended or timed out; io.EOF
// when it ended cleanly between requests).
func (r *Request) Read(br *bufio.Reader, max int) error {
	r.reset()
	r.Method, r.Path, r.Query, r.Host, r.Expect100 = nil, nil, nil, nil, false
	line, eol, err := r.readStart(br, max)
	if err != nil {
		return err
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return bad("malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return bad("malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !isToken(method) {
		return bad("invalid method")
	}
	switch {
	case string(version) == "HTTP/1.1":
		r.Minor = 1
	case string(version) == "HTTP/1.0":
		r.Minor = 0
	case len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return errVersion
	default:
		return bad("malformed request line")
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return bad("invalid request target")
		}
	}
	r.Method = method
	if err := r.parseFields(eol+1, true); err != nil {
		return err
	}
	nHost := 0
	for i := range r.Fields {
		f := &r.Fields[i]
		switch len(f.Name) {
		case 4:
			if equalFoldString(f.Name, "host") {
				nHost++
				r.Host = f.Value
			}
		case 6:
			if equalFoldString(f.Name, "expect") && equalFoldString(f.Value, "100-continue") && r.Minor == 1 {
				r.Expect100 = true
			}
		}
	}
	if nHost > 1 {
		return bad("duplicate Host")
	}
	if nHost == 0 && r.Minor == 1 {
		return bad("missing Host")
	}
	if !validHost(r.Host) {
		return bad("invalid Host")
	}
	switch {
	case len(target) > 0 && target[0] == '/':
	case hasHTTPScheme(target):
		t := target[bytes.IndexByte(target, ':')+3:]
		end := bytes.IndexAny(t, "/?")
		if end < 0 {
			end = len(t)
		}
		auth := t[:end]
		if len(auth) == 0 || bytes.IndexByte(auth, '@') >= 0 || !validHost(auth) {
			return bad("invalid request target")
		}
		r.Host = auth
		target = t[end:]
		if len(target) == 0 || target[0] == '?' {
			// An empty path is "/"; the query, if any, stays.
			r.Path = slash
			r.Query = target
			return nil
		}
	default:
		return bad("invalid request target")
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.Query = target[:q], target[q:]
	} else {
		r.Path = target
	}
	if i := bytes.IndexByte(r.Path, '#'); i >= 0 {
		return bad("fragment in request target")
	}
	return nil
}

var slash = []byte("/")

// HasBody reports whether the request has a body to read.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Response is a response head. Its zero value is ready for Read.
type Response struct {
	head
	// Status is the status code; Reason the reason phrase (may be empty).
	Status int
	Reason []byte
}

// Read reads a response head from br, at most max bytes. A response that
// cannot be framed safely (two different Content-Lengths, Content-Length
// with Transfer-Encoding, a transfer coding other than chunked) is an
// *Error. (Whether the response has a body depends on the request: see
// BodyMode.)
func (r *Response) Read(br *bufio.Reader, max int) error {
	r.reset()
	r.Status, r.Reason = 0, nil
	line, eol, err := r.readStart(br, max)
	if err != nil {
		return err
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		!isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || (len(line) > 12 && line[12] != ' ') {
		return bad("malformed status line")
	}
	r.Minor = int(line[7] - '0')
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 {
		return bad("malformed status line")
	}
	if len(line) > 13 {
		r.Reason = line[13:]
		for _, c := range r.Reason {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("malformed status line")
			}
		}
	}
	return r.parseFields(eol+1, false)
}

// Body framings of a response (BodyMode).
const (
	BodyNone   = iota // no body
	BodyLength        // ContentLength bytes
	BodyChunked
	BodyToEOF // until the connection closes
)

// BodyMode tells how the response's body is framed, given the request's
// method (RFC 9112 §6.3).
func (r *Response) BodyMode(head bool) int {
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return BodyNone
	case r.Chunked:
		return BodyChunked
	case r.ContentLength == 0:
		return BodyNone
	case r.ContentLength > 0:
		return BodyLength
	}
	return BodyToEOF
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// tokenTable marks the tchar bytes of RFC 9110 §5.6.2.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts what may appear in a Host header: reg-name, IPv4, an
// IP literal in brackets, and a port; no whitespace, slashes or the like.
func validHost(h []byte) bool {
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']' || c == '~' || c == '%' ||
			c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' ||
			c == ',' || c == ';' || c == '=':
		default:
			return false
		}
	}
	return true
}

func hasHTTPScheme(t []byte) bool {
	return (len(t) > 7 && equalFoldString(t[:7], "http://")) || (len(t) > 8 && equalFoldString(t[:8], "https://"))
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFoldString compares b with s, which must be lower case ASCII.
func equalFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals s, ignoring ASCII case; s must be
// lower case.
func EqualFold(b []byte, s string) bool { return equalFoldString(b, s) }

// AppendStatusLine appends "HTTP/1.1 <code> <reason>\r\n".
func AppendStatusLine(dst []byte, code int, reason []byte) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	if len(reason) == 0 {
		dst = append(dst, StatusText(code)...)
	} else {
		dst = append(dst, reason...)
	}
	return append(dst, "\r\n"...)
}

// AppendField appends "name: value\r\n".
func AppendField(dst, name, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}
