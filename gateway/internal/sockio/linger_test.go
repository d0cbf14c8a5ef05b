package sockio

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// A server connection closed while the client is still sending (a refused
// upload) sends its answer and a FIN and drains the rest, so the client can
// finish writing and then read the whole answer. A plain close would reset
// the connection: the client's writes fail and the answer may be lost.
func TestCloseLingersWhileTheClientSends(t *testing.T) {
	c, client := pair(t)
	// On loopback a write has reached the peer's receive queue when it
	// returns: the server closes with these bytes unread.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := client.Write(chunk); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("HTTP/1.1 413 Content Too Large\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 8 { // 512 KiB more, all drained
		if _, err := client.Write(chunk); err != nil {
			t.Fatalf("client write after the server closed: %v", err)
		}
	}
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "HTTP/1.1 413 Content Too Large\r\n\r\n" {
		t.Fatalf("client read %q, %v: want the whole answer, then EOF", got, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close of a lingering connection: %v", err)
	}
}

// Lingering is bounded: a client that neither closes nor stops holding the
// connection is cut off after Linger.
func TestLingerEnds(t *testing.T) {
	c, client := pair(t)
	if _, err := client.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	// The FIN comes at once; the socket's close after Linger shows as a
	// reset of a write sent after it.
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after Close = %v, want EOF", err)
	}
	for {
		time.Sleep(50 * time.Millisecond)
		if _, err := client.Write([]byte("more")); err != nil {
			if took := time.Since(start); took < Linger/2 {
				t.Fatalf("connection closed after %v, before lingering", took)
			}
			return
		}
		if time.Since(start) > 5*Linger {
			t.Fatal("the lingering connection was never closed")
		}
	}
}
