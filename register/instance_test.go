package register

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"

	"github.com/zkgate/zkgate/internal/registry"
)

func TestEncodeInstanceIsSpringCloudZookeeperJSON(t *testing.T) {
	data := EncodeInstance("payment", "c0366eae-aa2e-4175-963d-51c139d008d0", "application-1",
		"10.0.0.7", 8004, map[string]string{}, 1651140425239)
	// docs/architecture.md#curator-registration-format, byte for byte.
	want := `{"name":"payment","id":"c0366eae-aa2e-4175-963d-51c139d008d0","address":"10.0.0.7","port":8004,"sslPort":null,` +
		`"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"application-1","name":"payment","metadata":{"instance_status":"UP"}},` +
		`"registrationTimeUTC":1651140425239,"serviceType":"DYNAMIC",` +
		`"uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}`
	if string(data) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", data, want)
	}
}

func TestEncodeInstanceParsesWithCuratorParser(t *testing.T) {
	md := map[string]string{"zone": "a", "version": "1.2"}
	data := EncodeInstance("orders", "id-1", "orders", "::1", 8080, md, 1)
	if md["instance_status"] != "" {
		t.Fatal("EncodeInstance modified the caller's metadata")
	}
	in, err := registry.CuratorParser{}.Parse("orders", "id-1", data, registry.NodeStat{Czxid: 7})
	if err != nil {
		t.Fatalf("CuratorParser: %v", err)
	}
	if in.Addr != "[::1]:8080" || in.ID != "id-1" || !in.Up() || in.Metadata["zone"] != "a" || in.Czxid != 7 {
		t.Fatalf("parsed %+v", in)
	}
	if got := nodeAddress(data); got != "[::1]:8080" {
		t.Fatalf("nodeAddress = %q", got)
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil || generic["sslPort"] != nil {
		t.Fatalf("sslPort must be null: %s", data)
	}

	down := EncodeInstance("orders", "id-1", "orders", "h", 1, map[string]string{MetadataStatus: "OUT_OF_SERVICE"}, 1)
	if !bytes.Contains(down, []byte(`"instance_status":"OUT_OF_SERVICE"`)) {
		t.Fatalf("explicit status lost: %s", down)
	}
}

func TestSplitAddress(t *testing.T) {
	for _, bad := range []string{"", "host", ":8080", "0.0.0.0:80", "[::]:80", "h:0", "h:99999", "a b:1"} {
		if _, _, _, err := splitAddress(bad); err == nil {
			t.Errorf("splitAddress(%q) accepted", bad)
		}
	}
	host, port, canon, err := splitAddress("10.0.0.7:8004")
	if err != nil || host != "10.0.0.7" || port != 8004 || canon != "10.0.0.7:8004" {
		t.Fatalf("splitAddress = %q %d %q %v", host, port, canon, err)
	}
}

func TestNewUUID(t *testing.T) {
	a, err := NewUUID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewUUID()
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !re.MatchString(a) || a == b {
		t.Fatalf("uuids %q %q", a, b)
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := Options{Servers: []string{"127.0.0.1:2181"}, Service: "s", Address: "127.0.0.1:1"}
	if _, err := newRegistration(ok); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"no service":    func(o *Options) { o.Service = "" },
		"slash service": func(o *Options) { o.Service = "a/b" },
		"bad address":   func(o *Options) { o.Address = "nope" },
		"no servers":    func(o *Options) { o.Servers = nil },
		"bad root":      func(o *Options) { o.Root = "services" },
		"bad id":        func(o *Options) { o.ID = "a/b" },
		"bad health":    func(o *Options) { o.Health = &HealthCheck{URL: "ftp://x"} },
		"empty health":  func(o *Options) { o.Health = &HealthCheck{} },
	} {
		o := ok
		mod(&o)
		if _, err := newRegistration(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
