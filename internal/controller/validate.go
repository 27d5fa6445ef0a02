package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/registry"
)

// Input limits.
const (
	maxBodyBytes   = 64 << 10
	maxReasonLen   = 1024
	maxDeployIDLen = 256
	maxServiceLen  = 255
	// DefaultDrainTimeout bounds a waiting drain that names no timeout.
	DefaultDrainTimeout = ctlclient.DefaultDrainTimeout
	// MaxDrainTimeout bounds every waiting drain.
	MaxDrainTimeout = time.Hour
	// MaxMarkTTL bounds a mark's lifetime.
	MaxMarkTTL = 30 * 24 * time.Hour
)

// statusError is an answer the API knows the status of: its message is
// sent as is with code (an input error is 400 and writes nothing).
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// statusf makes a statusError.
func statusf(code int, format string, args ...any) error {
	return &statusError{code, fmt.Sprintf(format, args...)}
}

// badf makes an input error (400).
func badf(format string, args ...any) error { return statusf(http.StatusBadRequest, format, args...) }

// checkService validates a service name: it becomes a znode name under
// the marks root, so it must be one path segment of printable characters.
func checkService(s string) error {
	switch {
	case s == "":
		return badf("service name is empty")
	case len(s) > maxServiceLen:
		return badf("service name is longer than %d bytes", maxServiceLen)
	case s == "." || s == "..":
		return badf("service name %q is not allowed", s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:@", r)
		if !ok {
			return badf("service name %q has a character other than letters, digits and . _ - : @", s)
		}
	}
	return nil
}

// checkAddr validates and normalizes an instance address (host:port).
func checkAddr(s string) (string, error) {
	a, err := registry.NormalizeAddr(s)
	if err != nil {
		return "", badf("instance %q: %v", s, err)
	}
	return a, nil
}

// parseDuration parses an optional Go duration; empty gives def.
func parseDuration(field, s string, def, maxD time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badf("%s: %q is not a duration such as 90s or 10m", field, s)
	}
	if d < 0 {
		return 0, badf("%s: %q is negative", field, s)
	}
	if d > maxD {
		return 0, badf("%s: %q is longer than the maximum %s", field, s, maxD)
	}
	return d, nil
}

// checkText validates a free-text field.
func checkText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return badf("%s is longer than %d bytes", field, maxLen)
	}
	if !utf8.ValidString(s) {
		return badf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return badf("%s has control characters", field)
		}
	}
	return nil
}

// decodeBody decodes a JSON object into v: unknown fields, trailing data,
// bodies over maxBodyBytes and anything but one object are errors. An
// empty body leaves v as is when allowEmpty.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) error {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badf("request body is larger than %d bytes", maxBodyBytes)
		}
		return badf("reading request body: %v", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		if allowEmpty {
			return nil
		}
		return badf("request body is empty: a JSON object is required")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badf("malformed JSON body: %v", err)
	}
	if dec.More() {
		return badf("malformed JSON body: data after the object")
	}
	var rest json.RawMessage
	if err := dec.Decode(&rest); err != io.EOF {
		return badf("malformed JSON body: data after the object")
	}
	return nil
}
