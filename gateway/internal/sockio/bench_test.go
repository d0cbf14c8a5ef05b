package sockio

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkExchange is an upstream exchange over loopback: a request held
// back (small) or sent at once (large, which first looks for unasked
// bytes), then its answer.
func BenchmarkExchange(b *testing.B) {
	for _, size := range []int{256, 2 * maxDeferred} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c, peer := exchangePair(b)
			req, answer := bytes.Repeat([]byte("q"), size), bytes.Repeat([]byte("a"), 128)
			go func() {
				in := make([]byte, size)
				for {
					if _, err := io.ReadFull(peer, in); err != nil {
						return
					}
					if _, err := peer.Write(answer); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, len(answer))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
