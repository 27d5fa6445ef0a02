package registry

import "testing"

const springPayment = `{"name":"payment","id":"c0366eae-aa2e-4175-963d-51c139d008d0","address":"10.0.0.7","port":8004,"sslPort":null,
 "payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"application-1","name":"payment","metadata":{"instance_status":"UP"}},
 "registrationTimeUTC":1651140425239,"serviceType":"DYNAMIC",
 "uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}`

func TestCuratorParseVariants(t *testing.T) {
	st := NodeStat{Czxid: 7, Mzxid: 9, Ctime: 1651140425239}
	cases := []struct {
		name, data string
		addr, id   string
		status     string
		meta       map[string]string
	}{
		{"spring", springPayment, "10.0.0.7:8004", "c0366eae-aa2e-4175-963d-51c139d008d0", "UP", map[string]string{"instance_status": "UP"}},
		{"null payload", `{"name":"a","id":"x","address":"h1","port":80,"sslPort":null,"payload":null}`, "h1:80", "x", "UP", nil},
		{"no payload", `{"address":"h1","port":80,"id":"x"}`, "h1:80", "x", "UP", nil},
		{"old empty metadata", `{"payload":{"@class":"x","metadata":{}},"port":81,"address":"h2","id":"y"}`, "h2:81", "y", "UP", nil},
		{"missing metadata", `{"payload":{"@class":"x"},"port":81,"address":"h2","id":"y"}`, "h2:81", "y", "UP", nil},
		{"out of service", `{"address":"h3","port":82,"payload":{"metadata":{"instance_status":"OUT_OF_SERVICE","zone":"a"}}}`, "h3:82", "node-1", "OUT_OF_SERVICE", map[string]string{"instance_status": "OUT_OF_SERVICE", "zone": "a"}},
		{"lower-case status", `{"address":"h3","port":82,"payload":{"metadata":{"instance_status":"up"}}}`, "h3:82", "node-1", "UP", map[string]string{"instance_status": "up"}},
		{"ssl port only", `{"address":"h4","port":null,"sslPort":8443}`, "h4:8443", "node-1", "UP", nil},
		{"ipv6", `{"address":"::1","port":9000}`, "[::1]:9000", "node-1", "UP", nil},
		{"custom payload", `{"address":"h5","port":1,"payload":"just a string"}`, "h5:1", "node-1", "UP", nil},
		{"non-string metadata", `{"address":"h6","port":2,"payload":{"metadata":{"weight":3}}}`, "h6:2", "node-1", "UP", map[string]string{"weight": "3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := CuratorParser{}.Parse("svc", "node-1", []byte(tc.data), st)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if in.Addr != tc.addr || in.ID != tc.id || in.Status != tc.status {
				t.Errorf("got addr=%q id=%q status=%q, want %q %q %q", in.Addr, in.ID, in.Status, tc.addr, tc.id, tc.status)
			}
			if len(in.Metadata) != len(tc.meta) {
				t.Errorf("metadata = %v, want %v", in.Metadata, tc.meta)
			}
			for k, v := range tc.meta {
				if in.Metadata[k] != v {
					t.Errorf("metadata[%s] = %q, want %q", k, in.Metadata[k], v)
				}
			}
			if in.Czxid != 7 || in.Mzxid != 9 || in.Service != "svc" {
				t.Errorf("stat not carried: %+v", in)
			}
			if (tc.status == "UP") != in.Up() {
				t.Errorf("Up() = %v for status %q", in.Up(), in.Status)
			}
		})
	}
}

func TestCuratorParseMalformed(t *testing.T) {
	for _, data := range []string{
		``, `   `, `{`, `null`, `[]`, `"x"`, `{"address":"h"}`, `{"port":80}`,
		`{"address":"h","port":0}`, `{"address":"h","port":70000}`, `{"address":"h","port":"80"}`,
		`{"address":"a b","port":80}`, `{"address":"h/x","port":80}`, "\x00\xff",
		// Control and non-characters in the address (ESC, BEL, NUL, DEL,
		// C1, private use, U+FFFE, invalid UTF-8), HTML.
		`{"address":"10.0.0.1\u001b[2J","port":80}`, `{"address":"h\u0007","port":80}`,
		`{"address":"h\u0000","port":80}`, `{"address":"h\u007f","port":80}`, `{"address":"h\u0080","port":80}`,
		`{"address":"h\ue000","port":80}`, `{"address":"h\ufffe","port":80}`, "{\"address\":\"h\xff\xfe\",\"port\":80}",
		`{"address":"<img src=x>","port":80}`,
	} {
		if in, err := (CuratorParser{}).Parse("svc", "n", []byte(data), NodeStat{}); err == nil {
			t.Errorf("Parse(%q) = %+v, want error", data, in)
		}
	}
}

func TestHostPortParse(t *testing.T) {
	in, err := HostPortParser{}.Parse("svc", "10.1.2.3:8080", []byte("anything"), NodeStat{Czxid: 3})
	if err != nil || in.Addr != "10.1.2.3:8080" || in.Port != 8080 || !in.Up() {
		t.Fatalf("got %+v, %v", in, err)
	}
	for _, n := range []string{"nohost", "h:", "h:0", "h:x", ":80", "h:99999", "h\x1b:80", "h\a:80", "h\u0085:80", "h\xff:80"} {
		if _, err := (HostPortParser{}).Parse("svc", n, nil, NodeStat{}); err == nil {
			t.Errorf("Parse(%q): want error", n)
		}
	}
}

func TestDedupeNewestCzxidWins(t *testing.T) {
	ins := Dedupe([]Instance{
		{Addr: "b:1", Czxid: 5, ID: "old-b"},
		{Addr: "a:1", Czxid: 3, ID: "a"},
		{Addr: "b:1", Czxid: 9, ID: "new-b"},
		{Addr: "b:1", Czxid: 7, ID: "mid-b"},
	})
	if len(ins) != 2 || ins[0].Addr != "a:1" || ins[1].ID != "new-b" {
		t.Fatalf("Dedupe = %+v", ins)
	}
	s := &Snapshot{Services: map[string][]Instance{"s": ins}}
	if got, ok := s.Lookup("s", "b:1"); !ok || got.ID != "new-b" {
		t.Fatalf("Lookup = %+v %v", got, ok)
	}
	if _, ok := s.Lookup("s", "c:1"); ok {
		t.Fatal("Lookup found a missing address")
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.5:8080": "10.0.0.5:8080", "[::1]:80": "[::1]:80", "host:0080": "host:80",
		"[fe80::1%eth0]:80": "[fe80::1%eth0]:80", "my_host-1.example:1": "my_host-1.example:1", "bücher.example:443": "bücher.example:443"} {
		got, err := NormalizeAddr(in)
		if err != nil || got != want {
			t.Errorf("NormalizeAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "host", "host:", "host:x", "a b:80", "h:65536",
		"\x00", "h\x00:80", "h\x01:80", "h\x7f:80", "h\u0080:80", "h\xff\xfe:80", "h\ue000:80", "h\x1b[2J:80", "h\a:80"} {
		if _, err := NormalizeAddr(in); err == nil {
			t.Errorf("NormalizeAddr(%q): want error", in)
		}
	}
}

// FuzzCuratorParse checks that no input makes the parser panic and that
// every accepted registration has a valid address.
func FuzzCuratorParse(f *testing.F) {
	f.Add([]byte(springPayment))
	f.Add([]byte(`{"address":"h","port":1,"payload":null}`))
	f.Add([]byte(`{"address":"h","port":1,"payload":{"metadata":{}}}`))
	f.Add([]byte(`{"address":"h","sslPort":443,"payload":{"metadata":{"instance_status":"OUT_OF_SERVICE"}}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := CuratorParser{}.Parse("svc", "n", data, NodeStat{})
		if err != nil {
			return
		}
		if _, err := NormalizeAddr(in.Addr); err != nil {
			t.Fatalf("accepted %q with bad address %q: %v", data, in.Addr, err)
		}
		if in.Port <= 0 || in.Port > 65535 || in.Status == "" {
			t.Fatalf("accepted %q as %+v", data, in)
		}
	})
}

func BenchmarkCuratorParse(b *testing.B) {
	data := []byte(springPayment)
	st := NodeStat{Czxid: 7, Mzxid: 9}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (CuratorParser{}).Parse("payment", "c0366eae-aa2e-4175-963d-51c139d008d0", data, st); err != nil {
			b.Fatal(err)
		}
	}
}
