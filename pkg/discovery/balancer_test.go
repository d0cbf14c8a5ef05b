package discovery

import (
	"fmt"
	"testing"
)

func instances(n int, weights ...int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{ID: fmt.Sprint("i", i), Service: "s", Addr: fmt.Sprint("h:", i)}
		if i < len(weights) {
			out[i].Weight = weights[i]
		}
	}
	return out
}

func TestRoundRobinCyclesEvenly(t *testing.T) {
	in := instances(3)
	b := RoundRobin()
	count := map[string]int{}
	for range 300 {
		got, done, ok := b.Pick(in)
		if !ok {
			t.Fatal("no pick")
		}
		done()
		count[got.ID]++
	}
	for _, x := range in {
		if count[x.ID] != 100 {
			t.Fatalf("counts %v, want 100 each", count)
		}
	}
	if _, _, ok := b.Pick(nil); ok {
		t.Fatal("picked from an empty list")
	}
}

func TestP2CAvoidsLoadedInstance(t *testing.T) {
	in := instances(3)
	b := P2C()
	// Pin 50 calls on i0 (picks are held, not released).
	for pinned := 0; pinned < 50; {
		got, done, _ := b.Pick(in[:1])
		_ = done
		if got.ID == "i0" {
			pinned++
		}
	}
	// Every pair that includes i0 must choose the other one.
	for range 1000 {
		got, done, ok := b.Pick(in)
		if !ok {
			t.Fatal("no pick")
		}
		if got.ID == "i0" {
			t.Fatal("picked the instance with 50 calls in flight over an idle one")
		}
		done()
	}
}

func TestP2CSpreadsAndReleases(t *testing.T) {
	in := instances(4)
	b := P2C()
	count := map[string]int{}
	var dones []func()
	for range 400 { // held: load must even out across all four
		got, done, _ := b.Pick(in)
		count[got.ID]++
		dones = append(dones, done)
	}
	for _, x := range in {
		if c := count[x.ID]; c < 90 || c > 110 {
			t.Fatalf("held picks %v: P2C should keep in-flight counts close", count)
		}
	}
	for _, d := range dones {
		d()
		d() // a second release must not drive the count negative
	}
	p := b.(*p2c)
	for _, x := range in {
		if n := p.counter(x.ID).Load(); n != 0 {
			t.Fatalf("%s has %d in flight after all releases", x.ID, n)
		}
	}
}

func TestP2CRespectsWeight(t *testing.T) {
	in := instances(2, 3, 1) // i0 weight 3, i1 weight 1
	b := P2C()
	count := map[string]int{}
	for range 400 {
		got, _, _ := b.Pick(in) // held
		count[got.ID]++
	}
	if count["i0"] < 290 || count["i0"] > 310 {
		t.Fatalf("held picks %v, want about 3:1", count)
	}
}

// Weights come from etcd values anyone with write access sets; an absurd one
// must not overflow the load comparison and send calls the wrong way.
func TestP2CHugeWeightDoesNotOverflow(t *testing.T) {
	in := instances(2, 1<<62, 1)
	b := P2C()
	for _, x := range in { // three calls in flight on each
		for range 3 {
			_, _, _ = b.Pick([]Instance{x})
		}
	}
	for range 100 {
		got, done, _ := b.Pick(in)
		done()
		if got.ID != "i0" {
			t.Fatalf("picked %s: the instance with a vastly larger weight and the same load must win", got.ID)
		}
	}
}
