package readmap

import "testing"

// The copy follows the map only when misses add up to its size, or on
// Publish, and never shares storage with the map.
func TestCopyFollowsMisses(t *testing.T) {
	var c Copy[int]
	if c.Load()["a"] != 0 || len(c.Load()) != 0 {
		t.Fatal("zero Copy is not empty")
	}
	m := map[string]int{"a": 1}
	c.Missed(m) // 1 miss >= len 0: copied
	if c.Load()["a"] != 1 || c.Misses() != 0 {
		t.Fatalf("after the first miss: %v, %d misses", c.Load(), c.Misses())
	}
	m["b"] = 2
	m["c"] = 3
	if _, ok := c.Load()["b"]; ok {
		t.Fatal("the copy shares the map's storage")
	}
	c.Missed(m) // 1 >= 1: copied again
	if len(c.Load()) != 3 {
		t.Fatalf("copy %v after a miss per entry, want 3 entries", c.Load())
	}
	m["d"] = 4
	c.Missed(m)
	c.Missed(m) // 2 misses < 3 entries: not yet
	if _, ok := c.Load()["d"]; ok || c.Misses() != 2 {
		t.Fatalf("copied before the misses reached its size: %v, %d misses", c.Load(), c.Misses())
	}
	c.Missed(m)
	if c.Load()["d"] != 4 {
		t.Fatal("not copied once the misses reached its size")
	}
	delete(m, "a")
	c.Publish(m)
	if _, ok := c.Load()["a"]; ok {
		t.Fatal("Publish kept a deleted entry")
	}
}
