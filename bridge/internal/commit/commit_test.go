package commit

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerPosition(t *testing.T) {
	tests := []struct {
		name  string
		start int64
		add   []int64
		done  []int64
		want  int64
	}{
		{"nothing added", 10, nil, nil, 10},
		{"added not confirmed", 10, []int64{10, 11}, nil, 10},
		{"in order", 0, []int64{0, 1, 2}, []int64{0, 1, 2}, 3},
		{"out of order stops at the hole", 0, []int64{0, 1, 2, 3}, []int64{0, 2, 3}, 1},
		{"hole filled last", 0, []int64{0, 1, 2, 3}, []int64{3, 2, 0, 1}, 4},
		{"gaps in offsets", 100, []int64{100, 105, 107}, []int64{100, 107}, 105},
		{"gaps all confirmed", 100, []int64{100, 105, 107}, []int64{107, 105, 100}, 108},
		{"unknown done ignored", 5, []int64{5, 6}, []int64{4, 9, 6}, 5},
		{"start after committed gap", 7, []int64{9}, []int64{9}, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(tc.start)
			for _, o := range tc.add {
				if err := tr.Add(o); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range tc.done {
				tr.Done(o)
			}
			if got := tr.Position(); got != tc.want {
				t.Fatalf("Position() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTrackerRejectsRewind(t *testing.T) {
	tr := New(0)
	if err := tr.Add(3); err != nil {
		t.Fatal(err)
	}
	for _, o := range []int64{3, 2} {
		if err := tr.Add(o); err == nil {
			t.Fatalf("Add(%d) after 3 succeeded", o)
		}
	}
}

func TestTrackerDoneTwice(t *testing.T) {
	tr := New(0)
	_ = tr.Add(0)
	_ = tr.Add(1)
	if !tr.Done(1) {
		t.Fatal("first Done(1) reported not outstanding")
	}
	if tr.Done(1) {
		t.Fatal("second Done(1) reported outstanding")
	}
	if got := tr.Outstanding(); got != 1 {
		t.Fatalf("Outstanding() = %d, want 1", got)
	}
}

// check compares the tracker against the definition: the smallest added
// offset not confirmed, else one past the largest added, else start.
func check(t *testing.T, tr *Tracker, start int64, added []int64, done map[int64]bool) {
	t.Helper()
	want := start
	if len(added) > 0 {
		want = added[len(added)-1] + 1
	}
	for _, o := range added {
		if !done[o] {
			want = o
			break
		}
	}
	if got := tr.Position(); got != want {
		t.Fatalf("Position() = %d, want %d (added %v)", got, want, added)
	}
}

func FuzzTracker(f *testing.F) {
	f.Add(int64(0), []byte{1, 2, 3, 0x81, 0x83, 0x82})
	f.Add(int64(1000), []byte{5, 0x80, 7, 0x81, 0x80, 9})
	f.Fuzz(func(t *testing.T, start int64, ops []byte) {
		if start < 0 || start > 1<<40 {
			return
		}
		tr := New(start)
		var added []int64
		done := map[int64]bool{}
		next := start
		for _, op := range ops {
			if op&0x80 == 0 { // add, skipping op&0x7 offsets to make gaps
				next += int64(op & 0x7)
				if err := tr.Add(next); err != nil {
					t.Fatal(err)
				}
				added = append(added, next)
				next++
			} else if len(added) > 0 { // confirm one of the added offsets
				o := added[int(op&0x7f)%len(added)]
				if tr.Done(o) == done[o] {
					t.Fatalf("Done(%d) outstanding report wrong", o)
				}
				done[o] = true
			}
			check(t, tr, start, added, done)
		}
	})
}

func TestTrackerRandomOrderLong(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := New(0)
	const n = 5000
	for i := int64(0); i < n; i++ {
		_ = tr.Add(i * 2)
	}
	perm := rng.Perm(n)
	seen := make([]bool, n)
	low := 0
	for _, p := range perm {
		tr.Done(int64(p) * 2)
		seen[p] = true
		for low < n && seen[low] {
			low++
		}
		want := int64(low) * 2
		if low == n {
			want = (n-1)*2 + 1
		}
		if got := tr.Position(); got != want {
			t.Fatalf("Position() = %d, want %d", got, want)
		}
	}
}

func BenchmarkTracker(b *testing.B) {
	tr := New(0)
	for i := 0; i < b.N; i++ {
		_ = tr.Add(int64(i))
		if i >= 64 {
			tr.Done(int64(i - 64))
		}
	}
}
