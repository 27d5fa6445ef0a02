package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readReq(t *testing.T, raw string) (*Request, error) {
	t.Helper()
	var r Request
	err := r.Read(bufio.NewReaderSize(strings.NewReader(raw), 4096), 64<<10)
	return &r, err
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestRequestRead(t *testing.T) {
	r, err := readReq(t, "\r\nPOST /orders/x?a=1&b=2 HTTP/1.1\r\nHost: api.example.com:8080\r\nContent-Length: 5\r\nX-A:  v  \r\nConnection: keep-alive, X-Secret\r\nExpect: 100-continue\n\r\nhello")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Method) != "POST" || string(r.Path) != "/orders/x" || string(r.Query) != "?a=1&b=2" ||
		string(r.Host) != "api.example.com:8080" || r.ContentLength != 5 || r.Chunked || !r.KeepAlive || !r.Expect100 || r.Minor != 1 {
		t.Fatalf("%+v", r)
	}
	if string(r.Get("x-a")) != "v" {
		t.Fatalf("X-A = %q", r.Get("x-a"))
	}
	if !r.IsHopByHop([]byte("x-secret")) || !r.IsHopByHop([]byte("Keep-Alive")) || !r.IsHopByHop([]byte("TE")) || r.IsHopByHop([]byte("X-A")) {
		t.Fatal("hop-by-hop")
	}

	r, err = readReq(t, "GET http://Example.com?q HTTP/1.0\r\nHost: other\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Host) != "Example.com" || string(r.Path) != "/" || string(r.Query) != "?q" || r.KeepAlive || r.Minor != 0 {
		t.Fatalf("absolute form: %+v", r)
	}
	r, err = readReq(t, "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if err != nil || string(r.Upgrade) != "websocket" {
		t.Fatalf("upgrade %q %v", r.Upgrade, err)
	}
	r, err = readReq(t, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
	if err != nil || r.Upgrade != nil {
		t.Fatalf("Upgrade without Connection: upgrade must not count: %q %v", r.Upgrade, err)
	}
	if _, err := readReq(t, ""); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
	if _, err := readReq(t, "GET / HTTP/1.1\r\nHost: h\r\n"); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
}

func TestRequestRefused(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400},
		{"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET /#f HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	} {
		if _, err := readReq(t, tc.raw); status(err) != tc.want {
			t.Errorf("%q: %v, want %d", tc.raw, err, tc.want)
		}
	}
	var r Request
	long := "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n"
	if err := r.Read(bufio.NewReaderSize(strings.NewReader(long), 4096), 64<<10); err != ErrHeadTooLarge {
		t.Errorf("long line: %v", err)
	}
	many := "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 100) + "\r\n"
	if err := r.Read(bufio.NewReaderSize(strings.NewReader(many), 4096), 2048); err != ErrHeadTooLarge {
		t.Errorf("large head: %v", err)
	}
}

func TestResponseRead(t *testing.T) {
	var r Response
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
	if err := r.Read(bufio.NewReader(strings.NewReader(raw)), 4096); err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || string(r.Reason) != "OK" || r.ContentLength != 3 || r.KeepAlive || r.BodyMode(false) != BodyLength || r.BodyMode(true) != BodyNone {
		t.Fatalf("%+v", r)
	}
	for raw, mode := range map[string]int{
		"HTTP/1.1 204 No Content\r\n\r\n":                        BodyNone,
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n": BodyNone,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n":  BodyChunked,
		"HTTP/1.0 200 OK\r\n\r\n":                                BodyToEOF,
		"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n":              BodyNone,
	} {
		if err := r.Read(bufio.NewReader(strings.NewReader(raw)), 4096); err != nil || r.BodyMode(false) != mode {
			t.Errorf("%q: mode %d, %v; want %d", raw, r.BodyMode(false), err, mode)
		}
	}
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: 1\r\n y\r\n\r\n",
	} {
		if err := r.Read(bufio.NewReader(strings.NewReader(raw)), 4096); status(err) == 0 {
			t.Errorf("%q accepted: %v", raw, err)
		}
	}
}

func TestChunked(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"))
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	var tr []byte
	for {
		n, err := ReadChunkHeader(br)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if tr, err = ReadTrailers(br, nil, 1024); err != nil {
				t.Fatal(err)
			}
			break
		}
		if _, rerr, werr := CopyN(bw, br, n, false); rerr != nil || werr != nil {
			t.Fatal(rerr, werr)
		}
		if err := ReadCRLF(br); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	if out.String() != "hello0123456789" || string(tr) != "X-T: 1\r\n" {
		t.Fatalf("%q %q", out.String(), tr)
	}
	for _, raw := range []string{"5\nhello\r\n", "zz\r\n", "\r\n", "fffffffffffffffffff\r\n", ";x\r\n"} {
		if _, err := ReadChunkHeader(bufio.NewReader(strings.NewReader(raw))); status(err) != 400 {
			t.Errorf("%q: %v", raw, err)
		}
	}
	if err := ReadCRLF(bufio.NewReader(strings.NewReader("\nX"))); err != ErrChunk {
		t.Errorf("bare LF after data: %v", err)
	}
	if got := string(AppendChunkHeader(nil, 0x1abc)); got != "1abc\r\n" {
		t.Errorf("chunk header %q", got)
	}
}

func TestCopy(t *testing.T) {
	src := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100000)), 4096)
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 4096)
	if n, rerr, werr := CopyN(bw, src, 70000, false); n != 70000 || rerr != nil || werr != nil {
		t.Fatal(n, rerr, werr)
	}
	bw.Flush()
	if out.Len() != 70000 {
		t.Fatal(out.Len())
	}
	if _, rerr, _ := CopyN(bw, src, 40000, false); rerr != io.ErrUnexpectedEOF {
		t.Fatalf("short source: %v", rerr)
	}
	out.Reset()
	bw.Reset(&out)
	src = bufio.NewReader(strings.NewReader("abc"))
	if _, rerr, werr := CopyToEOF(bw, src, true, true, make([]byte, 24)); rerr != nil || werr != nil {
		t.Fatal(rerr, werr)
	}
	if out.String() != "3\r\nabc\r\n" {
		t.Fatalf("%q", out.String())
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/orders/x":              "/orders/x",
		"/orders/../admin/x":     "/admin/x",
		"/orders/./x":            "/orders/x",
		"/orders/%2e%2e/admin/x": "/admin/x",
		"/orders/%2E./admin":     "/admin",
		"/a/b/..":                "/a/",
		"/a/.":                   "/a/",
		"/./":                    "/",
		"/a/.../b":               "/a/.../b",
		"/a/.b/..c":              "/a/.b/..c",
		"/a/%2f../b":             "/a/%2f../b",
		"/a//b/../c":             "/a//c",
		"/..a":                   "/..a",
	} {
		got, err := CleanPath(nil, []byte(in))
		if err != nil || string(got) != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/..", "/../x", "/orders/../../x", "/%2e%2e/x"} {
		if _, err := CleanPath(nil, []byte(in)); err != ErrPathAboveRoot {
			t.Errorf("CleanPath(%q): %v", in, err)
		}
	}
	p := []byte("/plain/path")
	if got, _ := CleanPath(nil, p); &got[0] != &p[0] {
		t.Error("a clean path is copied")
	}
}

func FuzzRequestRead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	f.Add("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
	f.Add("GET http://h/a/../b?q HTTP/1.0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		var r Request
		if err := r.Read(bufio.NewReaderSize(strings.NewReader(raw), 4096), 8192); err != nil {
			return
		}
		if r.Chunked && r.ContentLength >= 0 {
			t.Fatal("both framings")
		}
		if r.Minor == 1 && r.Get("host") == nil {
			t.Fatal("HTTP/1.1 without Host") // (an empty one is allowed)
		}
		if len(r.Path) == 0 || r.Path[0] != '/' {
			t.Fatalf("path %q", r.Path)
		}
		if p, err := CleanPath(nil, r.Path); err == nil && bytes.Contains(append(append([]byte{}, p...), '/'), []byte("/../")) {
			t.Fatalf("CleanPath left a dot-segment: %q", p)
		}
	})
}
