// Package registry follows a ZooKeeper service registry (Curator / Spring
// Cloud Zookeeper layout, or plain host:port nodes) and publishes it as
// immutable snapshots of instances, identified by address. The following
// itself (watches as hints, re-lists as truth, resyncs) is zktree's.
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zkgate/zkgate/internal/zktree"
)

// StatusUp is the instance_status that keeps an instance in rotation.
const StatusUp = "UP"

// Instance is one registered service instance. Instances are identified by
// Addr (host:port), never by ID: Curator makes a new ID at every start.
type Instance struct {
	Service string `json:"service"`
	// Addr is host:port, the instance's identity.
	Addr string `json:"addr"`
	Host string `json:"host"`
	Port int    `json:"port"`
	// ID is the registration's id (Curator's UUID, or the node name).
	ID string `json:"id"`
	// Node is the znode name under the service.
	Node string `json:"node"`
	// Czxid orders registrations: the newest registration of an address
	// wins, and a mark applies only while no registration of its address is
	// newer than the mark.
	Czxid int64 `json:"czxid"`
	// Mzxid is the zxid of the node's last data change.
	Mzxid int64 `json:"mzxid"`
	// Registered is the node's ctime, for display only.
	Registered time.Time `json:"registered"`
	// Incarnation tells a session flap from a restart: it is what a
	// registrar keeps when it re-creates its registration after its session
	// expired and what a restarted process changes (README.md, "ZooKeeper
	// layout (contract)"). Curator format: the registration id and its
	// registrationTimeUTC ("<id>@<ms>", or the id alone when the time is
	// absent); Curator re-registers the same ServiceInstance after a
	// session loss and makes a new UUID and time at each start. hostport
	// format: "data:" and a hash of the node's data when it has any (a
	// registrar that writes a per-start value there gets flap-safe drains),
	// empty otherwise. Empty means unknown: any re-registration after a
	// mark ends it.
	Incarnation string `json:"incarnation,omitempty"`
	// Status is payload.metadata.instance_status, "UP" when absent.
	Status   string            `json:"status"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Ephemeral owner session, 0 for persistent nodes.
	EphemeralOwner int64 `json:"ephemeral_owner,omitempty"`
}

// Up reports whether the registry itself says the instance takes traffic.
func (i *Instance) Up() bool { return strings.EqualFold(i.Status, StatusUp) }

// Snapshot is an immutable view of the whole registry. Never modify a
// snapshot or anything reachable from it: it is shared by every reader.
type Snapshot struct {
	// Info is the revision, the nodes skipped because their data could
	// not be parsed, when the snapshot was published, and whether a full
	// re-read published it, how many completed, and which Cache.Resync
	// tickets the latest one covers (see zktree.Info).
	zktree.Info
	// Services maps a service name to its instances, one per address
	// (the newest registration wins), sorted by Addr.
	Services map[string][]Instance
}

// Instances returns the instances of service (nil when none).
func (s *Snapshot) Instances(service string) []Instance {
	if s == nil {
		return nil
	}
	return s.Services[service]
}

// Lookup finds the instance of service with address addr.
func (s *Snapshot) Lookup(service, addr string) (Instance, bool) {
	ins := s.Instances(service)
	i := sort.Search(len(ins), func(i int) bool { return ins[i].Addr >= addr })
	if i < len(ins) && ins[i].Addr == addr {
		return ins[i], true
	}
	return Instance{}, false
}

// NodeStat is the part of a znode's stat the parser needs.
type NodeStat struct {
	Czxid          int64
	Mzxid          int64
	Ctime          int64 // ms since epoch
	EphemeralOwner int64
}

// Parser turns one registry node into an Instance.
type Parser interface {
	// Parse returns the instance registered by the node named node under
	// service, or an error saying why the node is malformed. It must not
	// panic on any input.
	Parse(service, node string, data []byte, st NodeStat) (Instance, error)
}

// ParserFor returns the parser of a registry format ("curator" or
// "hostport").
func ParserFor(format string) (Parser, error) {
	switch format {
	case "curator", "":
		return CuratorParser{}, nil
	case "hostport":
		return HostPortParser{}, nil
	}
	return nil, fmt.Errorf("unknown registry format %q", format)
}

// CuratorParser reads Curator ServiceInstance JSON, as written by Spring
// Cloud Zookeeper and Curator's ServiceDiscovery. It tolerates null sslPort
// and payload, empty or missing metadata, extra fields and any field order.
type CuratorParser struct{}

type curatorInstance struct {
	Name    string          `json:"name"`
	ID      string          `json:"id"`
	Address string          `json:"address"`
	Port    *int            `json:"port"`
	SSLPort *int            `json:"sslPort"`
	Payload json.RawMessage `json:"payload"`
	// RegistrationTimeUTC is Curator's registration time (ms); some
	// writers put a float or a string there, so it is read leniently.
	RegistrationTimeUTC json.RawMessage `json:"registrationTimeUTC"`
}

// registrationTime reads registrationTimeUTC: a JSON integer (or a
// string of one); 0 when absent or of another shape.
func registrationTime(raw json.RawMessage) int64 {
	s := strings.Trim(string(bytes.TrimSpace(raw)), `"`)
	if s == "" || s == "null" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

type curatorPayload struct {
	Metadata map[string]json.RawMessage `json:"metadata"`
}

// Parse implements Parser.
func (CuratorParser) Parse(service, node string, data []byte, st NodeStat) (Instance, error) {
	var ci curatorInstance
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Instance{}, errors.New("empty node data")
	}
	if err := json.Unmarshal(data, &ci); err != nil {
		return Instance{}, fmt.Errorf("decoding Curator ServiceInstance JSON: %w", err)
	}
	if ci.Address == "" {
		return Instance{}, errors.New("address is missing")
	}
	port := 0
	switch {
	case ci.Port != nil && *ci.Port > 0:
		port = *ci.Port
	case ci.SSLPort != nil && *ci.SSLPort > 0:
		port = *ci.SSLPort
	}
	if port <= 0 || port > 65535 {
		return Instance{}, errors.New("port is missing or out of range")
	}
	if err := checkHost(ci.Address); err != nil {
		return Instance{}, err
	}
	in := newInstance(service, node, ci.Address, port, st)
	in.ID = ci.ID
	if in.ID == "" {
		in.ID = node
	}
	in.Incarnation = in.ID
	if t := registrationTime(ci.RegistrationTimeUTC); t > 0 {
		in.Incarnation = in.ID + "@" + strconv.FormatInt(t, 10)
	}
	if len(ci.Payload) > 0 && !bytes.Equal(ci.Payload, []byte("null")) {
		var p curatorPayload
		// A payload of another shape (a custom class) is fine: it just has
		// no metadata we understand.
		if json.Unmarshal(ci.Payload, &p) == nil && len(p.Metadata) > 0 {
			in.Metadata = make(map[string]string, len(p.Metadata))
			for k, raw := range p.Metadata {
				var s string
				if json.Unmarshal(raw, &s) == nil {
					in.Metadata[k] = s
				} else {
					in.Metadata[k] = string(raw)
				}
			}
			if s, ok := in.Metadata["instance_status"]; ok && s != "" {
				in.Status = strings.ToUpper(s)
			}
		}
	}
	return in, nil
}

// HostPortParser reads nodes named host:port; their data is ignored.
type HostPortParser struct{}

// Parse implements Parser.
func (HostPortParser) Parse(service, node string, data []byte, st NodeStat) (Instance, error) {
	host, portStr, err := net.SplitHostPort(node)
	if err != nil {
		return Instance{}, fmt.Errorf("node name %q is not host:port", node)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return Instance{}, fmt.Errorf("node name %q has no valid port", node)
	}
	if err := checkHost(host); err != nil {
		return Instance{}, err
	}
	in := newInstance(service, node, host, port, st)
	in.ID = node
	if data = bytes.TrimSpace(data); len(data) > 0 {
		h := fnv.New64a()
		h.Write(data)
		in.Incarnation = "data:" + strconv.FormatUint(h.Sum64(), 16)
	}
	return in, nil
}

func newInstance(service, node, host string, port int, st NodeStat) Instance {
	return Instance{
		Service:        service,
		Addr:           net.JoinHostPort(host, strconv.Itoa(port)),
		Host:           host,
		Port:           port,
		Node:           node,
		Czxid:          st.Czxid,
		Mzxid:          st.Mzxid,
		Registered:     time.UnixMilli(st.Ctime),
		Status:         StatusUp,
		EphemeralOwner: st.EphemeralOwner,
	}
}

// checkHost accepts a host name or an IP literal (without brackets; an
// IPv6 zone after %): ASCII letters, digits and . - _ : %, and non-ASCII
// letters, digits and marks (internationalized names). Anything else —
// control characters (ESC, BEL, NUL, DEL, C1), spaces, invalid UTF-8,
// private-use and non-characters, which ZooKeeper also refuses in node
// names — makes the address malformed: it could not be dialled, and a
// terminal or page showing it could be fooled by it.
func checkHost(h string) error {
	if h == "" || len(h) > 253 || !utf8.ValidString(h) {
		return fmt.Errorf("address %q is not a host name or IP", h)
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '-', r == '_', r == ':', r == '%':
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
		default:
			return fmt.Errorf("address %q is not a host name or IP: it has the character %U", h, r)
		}
	}
	return nil
}

// NormalizeAddr checks that s is host:port and returns its canonical form
// (IPv6 in brackets), so that addresses given by users compare equal to
// registry addresses.
func NormalizeAddr(s string) (string, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("address %q is not host:port", s)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", fmt.Errorf("address %q has no valid port", s)
	}
	if err := checkHost(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Dedupe keeps, for each address, the registration with the largest Czxid
// and returns the instances sorted by Addr. It reuses the input slice.
func Dedupe(ins []Instance) []Instance {
	sort.Slice(ins, func(a, b int) bool {
		if ins[a].Addr != ins[b].Addr {
			return ins[a].Addr < ins[b].Addr
		}
		return ins[a].Czxid > ins[b].Czxid
	})
	out := ins[:0]
	for i := range ins {
		if len(out) > 0 && out[len(out)-1].Addr == ins[i].Addr {
			continue
		}
		out = append(out, ins[i])
	}
	return out
}
