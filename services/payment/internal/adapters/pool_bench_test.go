package adapters

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPoolPerMessage is what the pool's lock costs a message: taken
// when it is queued (here the same map insert, without a Keeper), taken
// and done, by many workers at once. Against a charge of tens of
// milliseconds it decides whether cheaper signalling is worth its
// complexity (README, "Consumer").
func BenchmarkPoolPerMessage(b *testing.B) {
	p := newPool(Workers, time.Hour, func(jetstream.Msg) bool { return false }, func(int) {})
	b.SetParallelism(Workers / 2) // × GOMAXPROCS (2 here): as many goroutines as workers
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h := &held{release: func() {}}
			p.mu.Lock()
			p.queued[h] = struct{}{}
			p.mu.Unlock()
			if !p.take(h) {
				b.Fatal("a queued message was not taken")
			}
			p.done()
		}
	})
}
