package kafkaleg_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestTopicIDOfABrokerOlderThan28IsNone: a broker older than 2.8 has no topic ids and knows Metadata up to v9; it
// closes the connection on a v10 request, as Kafka does on a version it does not know. TopicID sent v10 regardless, so
// it failed on every session and leg A never read such a cluster's partitions, where the README says the names and ids
// stay as before. It asks the broker's versions first now and gives "" without a v10.
func TestTopicIDOfABrokerOlderThan28IsNone(t *testing.T) {
	t.Parallel()
	b := oldBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := kafkaleg.TopicID(ctx, []string{b.addr}, "shanhai.orders", 0)
	if err != nil || id != "" {
		t.Fatalf("TopicID from a Kafka 2.7 broker = %q, %v; want no id and no error", id, err)
	}
	if n := b.metadataV10.Load(); n != 0 {
		t.Fatalf("the broker was sent Metadata v10 %d times, which it does not know", n)
	}
}

// fakeBroker answers as a Kafka 2.7 broker does: ApiVersions v0-v3, and Metadata up to v9 (not answered here: the
// test needs none). Any other request closes the connection, as Kafka does for a version it does not know.
type fakeBroker struct {
	addr        string
	metadataV10 atomic.Int32
}

func oldBroker(t *testing.T) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &fakeBroker{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *fakeBroker) serve(c net.Conn) {
	defer c.Close()
	for {
		var size int32
		if err := binary.Read(c, binary.BigEndian, &size); err != nil {
			return
		}
		req := make([]byte, size)
		if _, err := io.ReadFull(c, req); err != nil || len(req) < 8 {
			return
		}
		key, version := int16(binary.BigEndian.Uint16(req)), int16(binary.BigEndian.Uint16(req[2:]))
		corr := binary.BigEndian.Uint32(req[4:])
		if key == 3 && version >= 10 {
			b.metadataV10.Add(1)
		}
		if key != 18 || version > 3 {
			return
		}
		if _, err := c.Write(apiVersionsResponse(corr, version)); err != nil {
			return
		}
	}
}

// apiVersionsResponse is an ApiVersions response of the given version (header v0 for every version) listing
// ApiVersions v0-v3 and Metadata v0-v9, as Kafka 2.7 does (among others).
func apiVersionsResponse(corr uint32, version int16) []byte {
	keys := [][3]int16{{18, 0, 3}, {3, 0, 9}}
	body := binary.BigEndian.AppendUint32(nil, corr)
	body = binary.BigEndian.AppendUint16(body, 0) // error code
	if version >= 3 {
		body = binary.AppendUvarint(body, uint64(len(keys)+1)) // compact array
	} else {
		body = binary.BigEndian.AppendUint32(body, uint32(len(keys)))
	}
	for _, k := range keys {
		for _, v := range k {
			body = binary.BigEndian.AppendUint16(body, uint16(v))
		}
		if version >= 3 {
			body = append(body, 0) // no tagged fields
		}
	}
	if version >= 1 {
		body = binary.BigEndian.AppendUint32(body, 0) // throttle time
	}
	if version >= 3 {
		body = append(body, 0)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}
