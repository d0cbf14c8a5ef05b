package upstream

import (
	"testing"
	"time"
)

func ejectPool(t *testing.T, ins ...Instance) *Service {
	t.Helper()
	p := NewPool(&res{m: map[string][]Instance{"order": ins}}, []string{"order"}, ClientOptions{})
	return p.Service("order")
}

func byID(s *Service, id string) *Endpoint {
	for _, e := range s.snap.Load().all {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// An ejected instance is not picked while another is in service, also not
// for a retry that avoids the only other one; it is back when its period
// ends.
func TestPickSkipsEjected(t *testing.T) {
	s := ejectPool(t, Instance{ID: "a", Addr: "127.0.0.1:1", Version: "v1"},
		Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v1"}, Instance{ID: "c", Addr: "127.0.0.1:3", Version: "v1"})
	a, b := byID(s, "a"), byID(s, "b")
	now := time.Now()
	if out, _ := s.Eject(a, now); !out {
		t.Fatal("a not ejected with b and c in service")
	}
	for range 200 {
		if e, _ := s.Pick("", nil); e == a {
			t.Fatal("ejected a picked")
		}
		if e, _ := s.Pick("", b); e == a || e == b {
			t.Fatalf("retry avoiding b picked %s, want c", e.ID)
		}
	}
	a.ejectedUntil.Store(monotonic(now)) // its period is over
	seen := false
	for i := 0; i < 200 && !seen; i++ {
		e, _ := s.Pick("", nil)
		seen = e == a
	}
	if !seen {
		t.Fatal("a not picked again after its period")
	}
}

// The last instance of a version in service is never ejected: it is the only
// way to that version, and the breaker decides. When every instance is out
// anyway (ejected one by one as others came back and left), Pick still
// picks one.
func TestLastInstanceOfAVersionIsNotEjected(t *testing.T) {
	s := ejectPool(t, Instance{ID: "a", Addr: "127.0.0.1:1", Version: "v1"},
		Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v1"}, Instance{ID: "c", Addr: "127.0.0.1:3", Version: "v2"})
	a, b, c := byID(s, "a"), byID(s, "b"), byID(s, "c")
	now := time.Now()
	if out, _ := s.Eject(c, now); out {
		t.Fatal("c, the only v2 instance, ejected")
	}
	if out, _ := s.Eject(a, now); !out {
		t.Fatal("a not ejected with b in service")
	}
	if out, _ := s.Eject(b, now); out {
		t.Fatal("b, the last v1 instance in service, ejected")
	}
	if e, err := s.Pick("v1", nil); err != nil || e != b {
		t.Fatalf("Pick(v1) = %v, %v; want b", e, err)
	}
	b.ejectedUntil.Store(monotonic(now) + int64(time.Minute))
	if e, err := s.Pick("v1", nil); err != nil || e == nil {
		t.Fatalf("Pick(v1) with every v1 instance out = %v, %v; want one of them", e, err)
	}
}

// Ejections in a row grow from ejectBase to ejectMax; a success starts the
// count again.
func TestEjectionGrowsAndResets(t *testing.T) {
	s := ejectPool(t, Instance{ID: "a", Addr: "127.0.0.1:1", Version: "v1"},
		Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v1"})
	a := byID(s, "a")
	now := time.Now()
	at := now // each refusal comes as the period before it ends
	period := func() time.Duration { return time.Duration(a.ejectedUntil.Load() - monotonic(at)) }
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, ejectMax, ejectMax, ejectMax}
	for i, w := range want {
		if out, fresh := s.Eject(a, at); !out || !fresh {
			t.Fatalf("ejection %d refused (out %v, fresh %v)", i+1, out, fresh)
		}
		if got := period(); got != w {
			t.Fatalf("ejection %d: %v, want %v", i+1, got, w)
		}
		at = at.Add(w)
	}
	a.Succeeded()
	if a.ejectedUntil.Load() != 0 {
		t.Fatal("a success left the ejection deadline")
	}
	s.Eject(a, at)
	if got := period(); got != ejectBase {
		t.Fatalf("ejection after a success: %v, want %v", got, ejectBase)
	}
}

// A pick among instances never ejected allocates nothing (and reads no
// clock: inService is not reached).
func TestPickAllocatesNothing(t *testing.T) {
	s := ejectPool(t, Instance{ID: "a", Addr: "127.0.0.1:1", Version: "v1"},
		Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v1"})
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Pick("", nil) }); n != 0 {
		t.Fatalf("Pick allocates %v", n)
	}
}

// Refusals of requests sent to an instance before its ejection began (a
// burst: the event loop fails every request queued on a dial at once) come
// within its period: they keep it out, but neither lengthen the period nor
// count as ejections in a row. Counted, a handful of requests in flight
// when an instance restarted ejected it for ejectMax, not ejectBase.
func TestRefusalsWithinAPeriodEjectOnce(t *testing.T) {
	s := ejectPool(t, Instance{ID: "a", Addr: "127.0.0.1:1", Version: "v1"},
		Instance{ID: "b", Addr: "127.0.0.1:2", Version: "v1"})
	a := byID(s, "a")
	now := time.Now()
	for i := range 6 {
		if out, fresh := s.Eject(a, now.Add(time.Duration(i)*time.Millisecond)); !out || fresh != (i == 0) {
			t.Fatalf("refusal %d: out %v, fresh %v; want out, fresh only for the first", i+1, out, fresh)
		}
	}
	if got := time.Duration(a.ejectedUntil.Load() - monotonic(now)); got != ejectBase {
		t.Fatalf("six refusals within one period ejected a for %v, want %v", got, ejectBase)
	}
	// With every instance of its version out, a refusal is the service's
	// failure again (Pick takes ejected instances then): the breaker
	// decides, as for the last instance.
	b := byID(s, "b")
	b.ejectedUntil.Store(monotonic(now) + int64(time.Minute))
	if out, fresh := s.Eject(a, now.Add(10*time.Millisecond)); out || fresh {
		t.Fatalf("a refusal with every v1 instance out: out %v, fresh %v; want neither", out, fresh)
	}
}
