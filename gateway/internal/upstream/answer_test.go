package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestCheckHead(t *testing.T) {
	for _, tc := range []struct {
		name, buf string
		end       int // 0: head not complete yet
		bad       bool
	}{
		{"whole", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 38, false},
		{"head only so far", "HTTP/1.1 200 OK\r\nContent-Len", 0, false},
		{"no fields", "HTTP/1.1 204 No Content\r\n\r\n", 27, false},
		{"empty lines first, as the parser skips", "\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 23, false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length:2 \r\n\r\nok", 57, false},
		{"a body's bytes are not the head's", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\na\nb\r\n", 38, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\nCONTENT-LENGTH: 5\r\n\r\nok", 0, true},
		{"two lengths, head not complete", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 2\r\n", 0, true},
		{"bare LF throughout", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 0, true},
		{"bare LF status line, head not complete", "HTTP/1.1 200 OK\nX", 0, true},
		{"bare LF in one field line", "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok", 0, true},
		{"bare LF blank line", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok\r\n\r\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end, err := CheckHead([]byte(tc.buf))
			if tc.bad {
				if !errors.Is(err, ErrFraming) {
					t.Fatalf("CheckHead = %d, %v; want ErrFraming", end, err)
				}
				return
			}
			if err != nil || end != tc.end {
				t.Fatalf("CheckHead = %d, %v; want %d", end, err, tc.end)
			}
		})
	}
}

// FuzzCheckHead checks that a head CheckHead passes ends where fasthttp's
// parser ends it, so the head checked is the head parsed, and that a head
// it passes has at most one Content-Length value for the parser to pick.
func FuzzCheckHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		end, err := CheckHead(buf)
		if err != nil || end == 0 {
			return
		}
		var h fasthttp.ResponseHeader
		br := bufio.NewReaderSize(bytes.NewReader(buf), len(buf)+16)
		if h.Read(br) != nil {
			return // not HTTP the parser takes: refused anyway
		}
		if used := len(buf) - br.Buffered(); used != end {
			t.Fatalf("CheckHead ends the head at %d, the parser at %d", end, used)
		}
		if n := h.ContentLength(); n >= 0 && bytes.Count(bytes.ToLower(buf[:end]), []byte("\ncontent-length:")) > 1 {
			// Several fields passed: they must all say n.
			for _, line := range bytes.Split(buf[:end], []byte("\r\n")) {
				if v, ok := bytes.CutPrefix(bytes.ToLower(line), []byte("content-length:")); ok && string(bytes.Trim(v, " \t")) != strconv.Itoa(n) {
					t.Fatalf("parser took %d, a field says %q", n, v)
				}
			}
		}
	})
}

// BenchmarkCheckHead is what the check adds to every upstream answer on
// both transports: a typical service answer's head.
func BenchmarkCheckHead(b *testing.B) {
	buf := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: 0af7651916cd43dd8448eb211c80319c\r\n" +
		"Date: Sat, 05 Dec 2026 07:50:00 GMT\r\nContent-Length: 27\r\n\r\n{\"id\":7,\"status\":\"PENDING\"}")
	for b.Loop() {
		if _, err := CheckHead(buf); err != nil {
			b.Fatal(err)
		}
	}
}
