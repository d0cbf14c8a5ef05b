package upstream

import (
	"sync"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/breaker"
)

// pkg/breaker's breaker is what run.go gives every service: it must keep
// satisfying Breaker (Admit, so that an attempt can be left out of the
// counts), or the gateway does not build.
var _ Breaker = (*breaker.Breaker)(nil)

type res struct {
	mu sync.Mutex
	m  map[string][]Instance
}

func (r *res) Instances(svc string) []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Instance(nil), r.m[svc]...)
}

func TestRefreshFollowsResolverAndKeepsPools(t *testing.T) {
	r := &res{m: map[string][]Instance{"order": {{ID: "a", Addr: "127.0.0.1:1", Version: "v1"}}}}
	p := NewPool(r, []string{"order"}, ClientOptions{})
	s := p.Service("order")
	a1, err := s.Pick("", nil)
	if err != nil || a1.ID != "a" {
		t.Fatalf("Pick = %v, %v", a1, err)
	}
	r.m["order"] = append(r.m["order"], Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v2"})
	p.Refresh()
	if got := s.Versions(); len(got["v1"]) != 1 || len(got["v2"]) != 1 {
		t.Fatalf("versions after add: %v", got)
	}
	a2, _ := s.Pick("v1", nil)
	if a2 != a1 {
		t.Fatal("an unchanged instance lost its endpoint (and connection pool)")
	}
	if e, _ := s.Pick("v2", nil); e.ID != "b" {
		t.Fatalf("Pick(v2) = %s", e.ID)
	}
	if _, err := s.Pick("v3", nil); err != ErrNoInstance {
		t.Fatalf("Pick(v3) err = %v", err)
	}
	r.m["order"] = r.m["order"][1:]
	p.Refresh()
	for range 20 {
		if e, _ := s.Pick("", nil); e.ID != "b" {
			t.Fatalf("removed instance still picked: %s", e.ID)
		}
	}
	if len(p.clients) != 1 {
		t.Fatalf("pool for the removed address kept: %d pools", len(p.clients))
	}
}

func TestPickAvoidsLastAndPrefersLessLoaded(t *testing.T) {
	r := &res{m: map[string][]Instance{"s": {{ID: "a", Addr: "h:1"}, {ID: "b", Addr: "h:2"}}}}
	s := NewPool(r, []string{"s"}, ClientOptions{}).Service("s")
	a, _ := s.Pick("", nil)
	for range 50 {
		if e, _ := s.Pick("", a); e == a {
			t.Fatal("retry went back to the instance it should avoid")
		}
	}
	for range 5 {
		a.Begin()
	}
	for range 50 {
		if e, _ := s.Pick("", nil); e == a {
			t.Fatal("P2C chose the busier of two instances")
		}
	}
}
