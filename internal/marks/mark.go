// Package marks models drain marks: the persistent nodes
// /zkgate/marks/<service>/<host:port> that tell every gateway to stop sending
// new requests to an instance before it goes offline.
package marks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Mark is one drain mark. The JSON fields are the node's content (a
// contract, docs/architecture.md#zookeeper-layout); Service, Addr and
// Mzxid come from the node's path and stat.
type Mark struct {
	Reason    string `json:"reason"`
	By        string `json:"by"`
	CreatedMs int64  `json:"created_ms"`
	ExpiresMs int64  `json:"expires_ms"`
	DeployID  string `json:"deploy_id"`
	// Incarnation is the registry's Instance.Incarnation of the address's
	// registration when the mark was written ("" when the address was not
	// registered, the format cannot tell, or the mark predates the field).
	// A registration created after the mark with this same incarnation is
	// the drained process re-registering after a session flap: it does not
	// end the mark (README.md, "ZooKeeper layout (contract)").
	Incarnation string `json:"incarnation,omitempty"`
	// RegCzxid is the czxid of that registration (for display and
	// diagnosis; the rule does not use it).
	RegCzxid int64 `json:"reg_czxid,omitempty"`

	Service string `json:"-"`
	Addr    string `json:"-"`
	// Mzxid is the zxid of the mark's last write. The mark applies to its
	// address while no registration of that address has a larger Czxid.
	Mzxid int64 `json:"-"`
}

// Encode returns the node content.
func (m Mark) Encode() []byte {
	b, _ := json.Marshal(m) // cannot fail: only strings and integers
	return b
}

// Decode parses node content into a mark for service and addr.
func Decode(service, addr string, data []byte, mzxid int64) (Mark, error) {
	var m Mark
	if _, err := registry.NormalizeAddr(addr); err != nil {
		return Mark{}, fmt.Errorf("mark %s/%s: %w", service, addr, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Mark{}, fmt.Errorf("decoding mark %s/%s: %w", service, addr, err)
	}
	m.Service, m.Addr, m.Mzxid = service, addr, mzxid
	return m, nil
}

// Expired reports whether the mark's TTL has passed at now.
func (m Mark) Expired(now time.Time) bool {
	return m.ExpiresMs > 0 && now.UnixMilli() >= m.ExpiresMs
}

// AppliesTo reports whether the mark keeps in out of rotation: in has the
// mark's address, is not a new registration after the mark (EndedBy),
// and the mark has not expired.
func (m Mark) AppliesTo(in registry.Instance, now time.Time) bool {
	return in.Addr == m.Addr && !m.EndedBy(in) && !m.Expired(now)
}

// EndedBy reports whether in, a registration of the mark's address, is a
// new registration that ends the mark: created after the mark was written
// (zxid order, never clocks) and not the drained registration re-created
// after a session flap (see Reregistered).
func (m Mark) EndedBy(in registry.Instance) bool {
	return in.Addr == m.Addr && Reregistered(in.Czxid, in.Incarnation, m.Mzxid, m.Incarnation)
}

// Reregistered is the rule of EndedBy on plain values, for callers that
// hold API views rather than registry instances: a registration with
// czxid and incarnation ends a mark written at mzxid that recorded
// markIncarnation when it was created after the mark and is not the same
// incarnation. A mark that recorded no incarnation (the address was not
// registered, the format cannot tell, or an older mark) is ended by any
// registration created after it.
func Reregistered(czxid int64, incarnation string, mzxid int64, markIncarnation string) bool {
	if czxid <= mzxid {
		return false
	}
	return markIncarnation == "" || incarnation != markIncarnation
}

// Snapshot is an immutable view of every mark. Never modify it.
type Snapshot struct {
	// Info is the revision, the malformed mark nodes skipped, and whether
	// a full re-read published the snapshot, how many completed, and which
	// Cache.Resync tickets the latest one covers (see zktree.Info).
	zktree.Info
	// Marks maps service, then address, to its mark.
	Marks map[string]map[string]Mark
	// Pending maps service, then address, to the marks that an event
	// reported written but that are not read yet (Options.Pending): their
	// content is unknown, but a drain may be starting. Nil when none.
	Pending map[string]map[string]struct{}
}

// Get returns the mark of service/addr.
func (s *Snapshot) Get(service, addr string) (Mark, bool) {
	if s == nil {
		return Mark{}, false
	}
	m, ok := s.Marks[service][addr]
	return m, ok
}

// IsPending reports whether an event reported the mark of service/addr
// written and it is not read yet (see Snapshot.Pending).
func (s *Snapshot) IsPending(service, addr string) bool {
	if s == nil {
		return false
	}
	_, ok := s.Pending[service][addr]
	return ok
}

// Count returns the number of marks.
func (s *Snapshot) Count() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, ms := range s.Marks {
		n += len(ms)
	}
	return n
}
