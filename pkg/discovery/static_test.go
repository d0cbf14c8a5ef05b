package discovery

import (
	"context"
	"strings"
	"testing"
)

func TestStaticParsesSpec(t *testing.T) {
	s, err := NewStatic(" user=127.0.0.1:8081, order=10.0.0.1:8082,order=10.0.0.2:8082 ,")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Instances("order"); len(got) != 2 || got[0].Addr != "10.0.0.1:8082" || got[1].Addr != "10.0.0.2:8082" {
		t.Fatalf("order instances %+v", got)
	}
	if got := s.Instances("user"); len(got) != 1 || got[0].Service != "user" || got[0].ID == "" {
		t.Fatalf("user instances %+v", got)
	}
	if got := s.Instances("payment"); len(got) != 0 {
		t.Fatalf("unknown service gave %+v", got)
	}
	if err := s.Register(context.Background(), Instance{Service: "payment", Addr: "h:1"}); err != nil {
		t.Fatal(err)
	}
	if len(s.Instances("payment")) != 1 {
		t.Fatal("registered instance not resolved")
	}
}

func TestStaticRejectsBadEntries(t *testing.T) {
	_, err := NewStatic("user=127.0.0.1:8081,order,=x:1,payment=nohostport")
	if err == nil {
		t.Fatal("accepted a bad spec")
	}
	for _, bad := range []string{`"order"`, `"=x:1"`, `"payment=nohostport"`} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name %s", err, bad)
		}
	}
	if strings.Contains(err.Error(), "8081") {
		t.Errorf("error names a good entry: %v", err)
	}
}

func TestRegisterValidates(t *testing.T) {
	s, _ := NewStatic("")
	if err := s.Register(context.Background(), Instance{Service: "a/b"}); err == nil ||
		!strings.Contains(err.Error(), "service") || !strings.Contains(err.Error(), "addr") {
		t.Fatalf("want errors naming service and addr, got %v", err)
	}
}

// An address the callers cannot dial is refused when the list is read, not
// met as a 502 on every call: a URL where host:port belongs, a port that is
// no number (the gateway's dialers take numbers only) or out of range, an
// address with no host or no port, and a service name Register refuses.
func TestStaticRejectsUndialableAddresses(t *testing.T) {
	for _, spec := range []string{
		"user=http://127.0.0.1:8081",
		"user=127.0.0.1:8081/",
		"user=127.0.0.1:http",
		"user=127.0.0.1:0",
		"user=127.0.0.1:65536",
		"user=127.0.0.1:-1",
		"user=127.0.0.1:",
		"user=:8081",
		"user=a:b:c",
		"user=127.0.0.1 :8081",
		"us/er=127.0.0.1:8081",
	} {
		if _, err := NewStatic(spec); err == nil {
			t.Errorf("NewStatic(%q) accepted it", spec)
		}
	}
	for _, spec := range []string{"user=[::1]:8081", "user=user.svc.cluster.local:8081", "user=10.0.0.1:65535"} {
		if _, err := NewStatic(spec); err != nil {
			t.Errorf("NewStatic(%q) = %v, want it accepted", spec, err)
		}
	}
}

// Register refuses an address callers cannot dial (ADVERTISE_ADDR without
// its port, or written as a URL): announced, every caller's call to that
// instance failed, while the service itself looked healthy.
func TestRegisterRefusesAnUndialableAddr(t *testing.T) {
	s, _ := NewStatic("")
	for _, addr := range []string{"10.0.0.5", "http://user:8081", "user:http", "user:0"} {
		err := s.Register(context.Background(), Instance{Service: "user", Addr: addr})
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("Register with addr %q = %v, want an error naming it", addr, err)
		}
	}
	if got := s.Instances("user"); len(got) != 0 {
		t.Errorf("refused instances resolved: %+v", got)
	}
}
