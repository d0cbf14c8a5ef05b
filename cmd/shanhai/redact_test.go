package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/redact"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// secret is the password of every URL below: no message, log or banner
// line may show it.
const secret = "s3cret"

// TestServerCheckShowsNoCredentials: a server URL nothing answers at is
// named in the refusal, and a URL url.Parse refuses (here a password with a
// bad escape, common in generated passwords pasted unencoded) was named
// whole, its password with it, on the terminal and in any log of the run.
func TestServerCheckShowsNoCredentials(t *testing.T) {
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for _, v := range []string{
		"pulsar://bob:" + secret + "%zz@" + addr, // url.Parse refuses it
		"bob:" + secret + "@" + addr,             // no scheme: parses, with no host
		"redis://:" + secret + "@" + addr + "/0", // parses: the host alone was named
	} {
		err := checkServers(map[string]string{"PULSAR_URL": v})
		if err == nil {
			t.Fatalf("%s: checkServers found a server at %s", v, addr)
		}
		if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "PULSAR_URL") {
			t.Errorf("checkServers(%q) error = %q, want PULSAR_URL named without its password", v, err)
		}
	}
	// pgx reads a password from the query too; a URL url.Parse refuses (here
	// a port with a typo) was named whole, that password with it.
	v := "postgres://" + addr + "x/shanhai?password=" + secret
	err = checkServers(map[string]string{"DATABASE_URL": v})
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("checkServers(%q) error = %v, want DATABASE_URL named without its password", v, err)
	}
}

// TestEmbeddedRunRefusalShowsNoCredentials: the same through Start, as a
// user with a stale PULSAR_URL in the environment meets it.
func TestEmbeddedRunRefusalShowsNoCredentials(t *testing.T) {
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PULSAR_URL", "pulsar://bob:"+secret+"%zz@127.0.0.1:"+strconv.Itoa(port))
	t.Setenv("PULSAR_ADMIN_URL", "")
	p, err := Start(context.Background(), Options{DataDir: t.TempDir()})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with nothing answering at PULSAR_URL")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("Start error = %q shows PULSAR_URL's password", err)
	}
}

// TestBannerShowsNoCredentials: the banner (the terminal, and whatever
// records it) named the Pulsar URL and the traces endpoint as given,
// passwords included.
func TestBannerShowsNoCredentials(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://tracer:"+secret+"@collector:4318")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	p := bannerPlatform()
	p.Pulsar = true
	p.Env["PULSAR_URL"] = "pulsar://bob:" + secret + "@pulsar:6650"
	p.Env["NATS_URL"] = "nats://" + secret + "@nats:4222" // a user without a password is nats.go's token
	var out strings.Builder
	Banner(&out, p, false, Memory{}, nil)
	if strings.Contains(out.String(), secret) {
		t.Errorf("banner shows a password:\n%s", out.String())
	}
	for _, want := range []string{"pulsar://bob:xxxxx@pulsar:6650", "https://tracer:xxxxx@collector:4318", "nats://xxxxx@nats:4222"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner does not name %s:\n%s", want, out.String())
		}
	}
}

// TestServiceDatabasesErrorShowsNoCredentials: -native's DATABASE_URL
// that url.Parse refuses was quoted whole in the error.
func TestServiceDatabasesErrorShowsNoCredentials(t *testing.T) {
	_, err := ServiceDatabases(context.Background(), "postgres://bob:"+secret+"%zz@127.0.0.1:1/shanhai", "user")
	if err == nil {
		t.Fatal("ServiceDatabases took a URL that does not parse")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("ServiceDatabases error = %q shows the password", err)
	}
}

// TestMisreadPasswordIsNotShown: an unencoded #, / or ? in a password ends
// the authority early, and url.Parse may still read a host there (bob:2024
// is host bob, port 2024, with no user). The refusal named that host, the
// password's first part, and the banner printed PULSAR_URL
// pulsar://bob:2024#s3cret@pulsar:6650 as given.
func TestMisreadPasswordIsNotShown(t *testing.T) {
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	err = checkServers(map[string]string{"PULSAR_URL": "pulsar://bob:2024#" + secret + "@" + addr})
	if err == nil || strings.Contains(err.Error(), "2024") || !strings.Contains(err.Error(), addr) {
		t.Errorf("checkServers error = %v, want %s named without any of the password", err, addr)
	}
	p := bannerPlatform()
	p.Pulsar = true
	p.Env["PULSAR_URL"] = "pulsar://bob:2024#" + secret + "@pulsar:6650"
	var out strings.Builder
	Banner(&out, p, false, Memory{}, nil)
	if strings.Contains(out.String(), secret) {
		t.Errorf("banner shows a password:\n%s", out.String())
	}
}

// TestServiceDatabasesSilentServerShowsNoPassword: a PostgreSQL that takes
// the connection and never answers is named by the host of DATABASE_URL,
// which was url.Parse's reading, bob:2024 (the first part of the password
// 2024#s3cret), for a password with an unencoded #.
func TestServiceDatabasesSilentServerShowsNoPassword(t *testing.T) {
	_, err := ServiceDatabases(context.Background(), "postgres://bob:2024#"+secret+"@"+testenv.Hung(t)+"/shanhai", "user")
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("ServiceDatabases error = %v, want a PostgreSQL that did not answer", err)
	}
	if strings.Contains(err.Error(), "2024") || strings.Contains(err.Error(), secret) {
		t.Errorf("ServiceDatabases error = %q shows part of the password", err)
	}
}

// TestServiceDatabasesMisreadPasswordIsRefused: a password with an
// unencoded / (postgres://bob:98/pw@db/x) ends the authority early:
// url.Parse and pgx read host bob, port 98 and the database "pw@db/x", and
// the connect error named that database, the rest of the password; one
// with an unencoded @ is cut at another @ by pgx than by url.Parse. Such a
// URL is refused, as pkg/database refuses it, before anything is dialled.
func TestServiceDatabasesMisreadPasswordIsRefused(t *testing.T) {
	for _, base := range []string{
		"postgres://bob:98/" + secret + "@127.0.0.1:1/shanhai",
		"postgres://bob:98@" + secret + "@127.0.0.1:1/shanhai",
	} {
		_, err := ServiceDatabases(context.Background(), base, "user")
		if err == nil {
			t.Fatalf("ServiceDatabases took %s", redact.URL(base))
		}
		if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, "98") {
			t.Errorf("ServiceDatabases error = %q shows part of the password", msg)
		}
	}
}

// TestCheckServersNamesAMisreadURLAsOne: a URL whose password has an
// unencoded #, /, ? or @ cannot be dialled as its user meant, and
// checkServers refuses it; it said "nothing answers at ... start the servers
// with make deps-up" of a server that was up, when what to fix is the URL.
func TestCheckServersNamesAMisreadURLAsOne(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	addr := up.Addr().String()
	for _, v := range []string{
		"postgres://bob:12/" + secret + "@" + addr + "/shanhai",
		"postgres://bob:12#" + secret + "@" + addr + "/shanhai",
		"pulsar://bob:12?" + secret + "@" + addr,
		"postgres://bob:12@" + secret + "@" + addr + "/shanhai",
	} {
		err := checkServers(map[string]string{"DATABASE_URL": v})
		if err == nil {
			t.Fatalf("checkServers took %s", redact.URL(v))
		}
		msg := err.Error()
		if strings.Contains(msg, secret) || strings.Contains(msg, "nothing answers") || !strings.Contains(msg, "percent-encoded") {
			t.Errorf("checkServers(%s) = %q, want the URL named as misread, without its password", redact.URL(v), msg)
		}
	}
	// A URL with no host and nothing misread in it (a Unix socket's) is no
	// encoding mistake: it is refused as one nothing answers at, as before.
	err = checkServers(map[string]string{"DATABASE_URL": "postgres:///shanhai?host=/run/postgresql"})
	if err == nil || strings.Contains(err.Error(), "percent-encoded") || !strings.Contains(err.Error(), "nothing answers") {
		t.Errorf("checkServers of a socket URL = %v, want nothing answers, not an encoding mistake", err)
	}
}
