// Package commit decides how far a partition's position may advance when
// confirmations arrive out of order.
//
// A consumer hands messages to a sink asynchronously, so confirmations for
// offsets 5, 7 and 6 may come back in that order. Committing 8 when 7 is
// confirmed would lose 6 if the process dies before 6 is confirmed (the bug
// behind kafka-go's Reader issues #674 and #1398). A Tracker commits only up to
// the first offset that is still outstanding. Offsets need not be contiguous:
// Kafka leaves gaps (compaction, transaction markers), and the tracker only
// ever reasons about offsets it was told about.
package commit

import (
	"fmt"
	"sort"
	"sync"
)

// Tracker follows one partition. Add is called in fetch order, Done in any
// order; Position is the offset to commit (the next one to read after a
// restart). It is safe for concurrent use: a fetcher adds while an
// acknowledgement handler marks done.
type Tracker struct {
	mu   sync.Mutex
	pos  int64   // every offset below pos is confirmed or was never tracked
	last int64   // highest offset added, pos-1 before any Add
	q    []entry // outstanding or done-but-not-yet-contiguous, ascending
	head int     // q[head:] is live; the prefix is reused on compaction
}

type entry struct {
	offset int64
	done   bool
}

// New starts a tracker at start, the first offset the consumer will read.
func New(start int64) *Tracker {
	return &Tracker{pos: start, last: start - 1}
}

// Add records that offset was handed to the sink. Offsets must strictly
// increase and not be below the start: a violation means the caller rewound
// without resetting the tracker, which would corrupt the committed position.
func (t *Tracker) Add(offset int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset <= t.last {
		return fmt.Errorf("commit: offset %d added after %d", offset, t.last)
	}
	t.last = offset
	t.q = append(t.q, entry{offset: offset})
	return nil
}

// Done marks offset confirmed and reports whether it was outstanding. A
// confirmation for an unknown or already confirmed offset changes nothing:
// late acknowledgements from a previous attempt are harmless.
func (t *Tracker) Done(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.q[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset || live[i].done {
		return false
	}
	live[i].done = true
	if i == 0 {
		t.advance()
	}
	return true
}

// advance drops the confirmed prefix and moves the position past it.
func (t *Tracker) advance() {
	for t.head < len(t.q) && t.q[t.head].done {
		t.pos = t.q[t.head].offset + 1
		t.head++
	}
	if t.head == len(t.q) {
		t.q, t.head = t.q[:0], 0
		t.pos = t.last + 1
		return
	}
	// Reclaim the dead prefix once it dominates, so memory stays bounded by
	// the number of outstanding offsets rather than by the stream's length.
	if t.head > 1024 && t.head*2 > len(t.q) {
		n := copy(t.q, t.q[t.head:])
		t.q, t.head = t.q[:n], 0
	}
}

// Position is the offset to commit: the first outstanding offset, or one past
// the last added when nothing is outstanding.
func (t *Tracker) Position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head < len(t.q) {
		return t.q[t.head].offset
	}
	return t.pos
}

// Outstanding counts offsets added and not yet confirmed.
func (t *Tracker) Outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.q[t.head:] {
		if !e.done {
			n++
		}
	}
	return n
}
