package zksession_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// writePKI makes a CA and a server certificate for 127.0.0.1 and writes
// server.pem (key and certificate, ZooKeeper's PEM key store) and ca.pem.
func writePKI(t *testing.T, dir string) (caPool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "zkgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	server := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})...)
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), server, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestTLSToSecureClientPort(t *testing.T) {
	dir := t.TempDir()
	pool := writePKI(t, dir)
	port := freePort(t)
	zc := zktest.Start(t,
		zktest.WithServerConfig("secureClientPort", strconv.Itoa(port)),
		zktest.WithServerConfig("secureClientPortAddress", "127.0.0.1"),
		zktest.WithServerConfig("serverCnxnFactory", "org.apache.zookeeper.server.NettyServerCnxnFactory"),
		zktest.WithServerConfig("ssl.keyStore.location", filepath.Join(dir, "server.pem")),
		zktest.WithServerConfig("ssl.keyStore.type", "PEM"),
		zktest.WithServerConfig("ssl.trustStore.location", filepath.Join(dir, "ca.pem")),
		zktest.WithServerConfig("ssl.trustStore.type", "PEM"),
		zktest.WithServerConfig("ssl.clientAuth", "none"),
	)
	_ = zc
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := connect(t, zksession.Config{Servers: []string{addr}, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	ctx := context.Background()
	if _, err := s.Create(ctx, "/over-tls", []byte("ok"), zksession.FlagPersistent, nil); err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Get(ctx, "/over-tls"); err != nil || string(data) != "ok" {
		t.Fatalf("Get over TLS: %q %v", data, err)
	}

	// A client that does not trust the server's CA never gets a session.
	bad, err := zksession.Connect(zksession.Config{Servers: []string{addr}, SessionTimeout: 2 * time.Second, TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := bad.WaitConnected(cctx); err == nil {
		t.Fatal("connected over TLS without trusting the server's certificate")
	}
}
