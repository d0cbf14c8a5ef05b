package backoff

import (
	"testing"
	"time"
)

func TestNextGrowsAndIsCapped(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for i := 0; i < 40; i++ {
		d := b.Next()
		ceil := min(b.Base<<i, b.Max)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, ceil/2, ceil)
		}
	}
	b.Reset()
	if d := b.Next(); d > b.Base {
		t.Fatalf("after Reset: %v > base", d)
	}
}
