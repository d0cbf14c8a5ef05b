package integration

import (
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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With certificates configured the gateway speaks TLS 1.2 or newer, and 1.3
// when the client can.
func TestTLSIsAtLeast12AndPrefers13(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	certFile, keyFile, pool := selfSigned(t)
	if transport() == "loop" {
		// The event loop serves no TLS: the gateway must refuse to start
		// and name the transport that does, not serve plain text.
		cmd := exec.Command(filepath.Join(bin, "gateway"))
		cmd.Env = append(os.Environ(), "HTTP_ADDR="+freeAddr(t), "ADMIN_ADDR=", "TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "GATEWAY_TRANSPORT=fasthttp") {
			t.Fatalf("loop transport with TLS: err %v, output %s", err, out)
		}
		return
	}
	g := w.startGateway("TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile)

	dial := func(minV, maxV uint16) (uint16, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", g.Addr,
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: minV, MaxVersion: maxV})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().Version, nil
	}
	if _, err := dial(tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 handshake accepted")
	}
	if v, err := dial(tls.VersionTLS12, tls.VersionTLS12); err != nil || v != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: %x %v", v, err)
	}
	if v, err := dial(0, 0); err != nil || v != tls.VersionTLS13 {
		t.Fatalf("default handshake: version %x %v, want TLS 1.3", v, err)
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
