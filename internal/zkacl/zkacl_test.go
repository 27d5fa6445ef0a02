package zkacl

import (
	"testing"

	"github.com/go-zookeeper/zk"
)

func TestPolicySound(t *testing.T) {
	pol := DigestPolicy("zkgate", "secret")
	other := zk.DigestACL(zk.PermAll, "someone", "else")[0]
	worldRead := zk.WorldACL(zk.PermRead)[0]
	for name, tc := range map[string]struct {
		acl  []zk.ACL
		want bool
	}{
		"wanted":                 {pol.Want, true},
		"self only":              {[]zk.ACL{pol.Self}, true},
		"self and another read":  {[]zk.ACL{pol.Self, {Perms: zk.PermRead, Scheme: "digest", ID: "ops:x"}}, true},
		"open":                   {zk.WorldACL(zk.PermAll), false},
		"self and world create":  {[]zk.ACL{pol.Self, {Perms: zk.PermRead | zk.PermCreate, Scheme: "world", ID: "anyone"}}, false},
		"another identity":       {[]zk.ACL{other, worldRead}, false},
		"self without admin":     {[]zk.ACL{{Perms: zk.PermAll &^ zk.PermAdmin, Scheme: pol.Self.Scheme, ID: pol.Self.ID}}, false},
		"self plus another full": {[]zk.ACL{pol.Self, other}, false},
		"read only":              {[]zk.ACL{worldRead}, false},
	} {
		if got := pol.Sound(tc.acl); got != tc.want {
			t.Errorf("%s: Sound(%s) = %v, want %v", name, Format(tc.acl), got, tc.want)
		}
	}
	if got := Format(zk.WorldACL(zk.PermAll)); got != "world:anyone:cdrwa" {
		t.Errorf("Format = %q", got)
	}
}
