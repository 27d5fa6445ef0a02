package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hasControl reports the first character a terminal would act on (other
// than newline and tab), or -1.
func hasControl(s string) rune {
	for _, r := range s {
		if r != '\n' && r != '\t' && mustEscape(r) {
			return r
		}
	}
	return -1
}

func TestEscapeWriter(t *testing.T) {
	for in, want := range map[string]string{
		"plain line\n":             "plain line\n",
		"tab\tok\n":                "tab\tok\n",
		"esc \x1b[2J bel \a cr \r": `esc \u001b[2J bel \u0007 cr \u000d`,
		"nul \x00 del \x7f":        `nul \u0000 del \u007f`,
		"c1 \u0085 \u009b":         `c1 \u0085 \u009b`,
		"bidi \u202e gnp.exe":      `bidi \u202e gnp.exe`,
		"bad \xff\xfe utf8":        `bad \xff\xfe utf8`,
		"bücher, 東京, <img src=x>":  "bücher, 東京, <img src=x>",
	} {
		// Whole, and split byte by byte (characters cut across writes).
		for _, split := range []bool{false, true} {
			var b bytes.Buffer
			w := newEscapeWriter(&b)
			if split {
				for i := 0; i < len(in); i++ {
					if n, err := w.Write([]byte{in[i]}); n != 1 || err != nil {
						t.Fatalf("Write: %d %v", n, err)
					}
				}
			} else if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
				t.Fatalf("Write: %d %v", n, err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Errorf("escape(%q, split %v) = %q, want %q", in, split, b.String(), want)
			}
		}
	}
	// A character cut at the end is escaped byte by byte by Flush.
	var b bytes.Buffer
	w := newEscapeWriter(&b)
	w.Write([]byte("x\xe6\x9d"))
	w.Flush()
	if b.String() != `x\xe6\x9d` {
		t.Errorf("cut character: %q", b.String())
	}
	// JSON output stays valid JSON (DEL and C1 are not escaped by
	// encoding/json; \u escapes are valid in JSON strings).
	b.Reset()
	w = newEscapeWriter(&b)
	printJSON(w, map[string]string{"a": "del \x7f c1 \u009b esc \x1b"})
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["a"] != "del \x7f c1 \u009b esc \x1b" {
		t.Errorf("escaped JSON %q: %v %q", b.String(), err, back)
	}
}

// `zkgate status` prints what the controller returns — gateway ids,
// addresses, reasons, service names — with control characters escaped, and
// a registry service whose name the API refuses is skipped and named
// (escaped) on stderr, not an error.
func TestStatusEscapesControlCharacters(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/services":
			io.WriteString(w, `{"services":[{"name":"orders","instances":1}],"skipped":["<img src=x onerror=alert(1)>\u001b[31m"]}`)
		case "/v1/gateways":
			io.WriteString(w, `{"gateways":[{"id":"gw\u001b]0;pwned\u0007","listen":"x\u009b","probe_ready":false,"probe_note":"n\u001b[2J"}],`+
				`"departed":[{"id":"gw\u0007","departed_ms":1,"probe":"p\u001b"}]}`)
		case "/v1/services/orders":
			io.WriteString(w, `{"service":"orders","live_gateways":1,"instances":[{"service":"orders","addr":"10.0.0.1\u001b[2J:80",`+
				`"state":"drained","registered":true,"status":"UP\u0007","marked":true,`+
				`"mark":{"service":"orders","addr":"10.0.0.1:80","reason":"r\u009b2J","by":"ops\u202e"},`+
				`"gateways":[{"id":"gw\u001b]0;pwned\u0007","state":"drained"}]}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"status", "--controller", srv.URL},
		{"status", "--controller", srv.URL, "--json"},
	} {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, &out, &errb)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		for name, s := range map[string]string{"stdout": out.String(), "stderr": errb.String()} {
			if r := hasControl(s); r >= 0 {
				t.Errorf("%v: %s has %U raw: %q", args, name, r, s)
			}
		}
		if !strings.Contains(errb.String(), "1 registry service(s) skipped") || !strings.Contains(errb.String(), "<img src=x") {
			t.Errorf("%v: stderr %q does not name the skipped service", args, errb.String())
		}
		if len(args) == 3 && !strings.Contains(out.String(), `10.0.0.1\u001b[2J:80`) {
			t.Errorf("%v: stdout %q", args, out.String())
		}
	}
}
