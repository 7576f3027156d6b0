package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gpujobs"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	ca := writePEM(t, dir, "ca.pem", "CERTIFICATE", der)
	cert := ca
	keyFile := writePEM(t, dir, "key.pem", "EC PRIVATE KEY", keyDER)

	c, err := TLS{CAFile: ca, CertFile: cert, KeyFile: keyFile}.Config("temporal.example:7233")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "temporal.example" || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("config: server name %q, roots %v, %d certificates", c.ServerName, c.RootCAs != nil, len(c.Certificates))
	}
	for _, bad := range []struct {
		tls  TLS
		want string
	}{
		{TLS{CertFile: cert}, "both a client certificate and its key"},
		{TLS{CAFile: keyFile}, "no PEM certificate"},
		{TLS{CAFile: filepath.Join(dir, "missing.pem")}, "read CA"},
	} {
		if _, err := bad.tls.Config("x:1"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: err %v, want %q", bad.tls, err, bad.want)
		}
	}
}

func TestRabbitURLFromSeedVariables(t *testing.T) {
	t.Setenv("RABBITMQ_URL", "")
	t.Setenv("RABBITMQ_HOST", "rabbitmq")
	t.Setenv("RABBITMQ_PORT", "5673")
	t.Setenv("RABBITMQ_USER", "admin")
	t.Setenv("RABBITMQ_PASS", "s3cret/+")
	u := DefaultRabbitURL()
	if u != "amqp://admin:s3cret%2F+@rabbitmq:5673/" {
		t.Errorf("URL %q", u)
	}
	if r := Redact(u); strings.Contains(r, "s3cret") {
		t.Errorf("redacted %q still shows the password", r)
	}
}

func TestRabbitURLUsesTLSWhenConfigured(t *testing.T) {
	t.Setenv("RABBITMQ_URL", "")
	t.Setenv("RABBITMQ_HOST", "rabbitmq")
	t.Setenv("RABBITMQ_TLS_CA", "/etc/ca.pem")
	if u := DefaultRabbitURL(); u != "amqps://guest:guest@rabbitmq:5671/" {
		t.Errorf("URL %q, want amqps on 5671", u)
	}
}

func TestMalformedEnvironmentIsAnError(t *testing.T) {
	t.Setenv("HEARTBEAT_TIMEOUT", "10")
	t.Setenv("WORKER_CONCURRENCY", "two")
	t.Setenv("WORKER_MEMORY_LIMIT", "lots")
	t.Setenv("GOOD_DURATION", "2m")
	if d := EnvDuration("GOOD_DURATION", time.Second); d != 2*time.Minute {
		t.Errorf("GOOD_DURATION read as %s", d)
	}
	EnvDuration("HEARTBEAT_TIMEOUT", 10*time.Second)
	EnvInt("WORKER_CONCURRENCY", 0)
	EnvBytes("WORKER_MEMORY_LIMIT", 0)
	err := CheckEnv()
	for _, want := range []string{
		`HEARTBEAT_TIMEOUT="10": want a duration with its unit`,
		`WORKER_CONCURRENCY="two": want an integer`,
		`WORKER_MEMORY_LIMIT="lots": want a size`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckEnv() = %v, want it to say %q", err, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "8GiB": 8 << 30, "512 MiB": 512 << 20, "1.5G": 3 << 29, "2tb": 2 << 40} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1", "8 parsecs"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
}
