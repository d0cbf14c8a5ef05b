package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestCheckHead(t *testing.T) {
	for _, tc := range []struct {
		name, buf string
		end       int // 0: head not complete yet
		bad       bool
		close     bool // closeAfter
	}{
		{"whole", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 38, false, false},
		{"head only so far", "HTTP/1.1 200 OK\r\nContent-Len", 0, false, false},
		{"no fields", "HTTP/1.1 204 No Content\r\n\r\n", 27, false, false},
		{"empty lines first, as the parser skips", "\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 23, false, false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length:2 \r\n\r\nok", 57, false, false},
		{"a body's bytes are not the head's", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\na\nb\r\n", 38, false, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\nCONTENT-LENGTH: 5\r\n\r\nok", 0, true, false},
		{"two lengths, head not complete", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 2\r\n", 0, true, false},
		{"bare LF throughout", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 0, true, false},
		{"bare LF status line, head not complete", "HTTP/1.1 200 OK\nX", 0, true, false},
		{"bare LF in one field line", "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok", 0, true, false},
		{"a length with whitespace before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\nContent-Length: 2\r\n\r\nok", 0, true, false},
		{"a coding with whitespace before the colon", "HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n", 0, true, false},
		{"any field with whitespace before the colon", "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", 0, true, false},
		{"a field with a tab before the colon", "HTTP/1.1 200 OK\r\nContent-Lengthy\t: 1\r\n\r\n", 0, true, false},
		{"whitespace before a colon in a value or a folded line", "HTTP/1.1 200 OK\r\nX-A: a : b\r\n c : d\r\n\r\n", 39, false, false},
		{"a space inside a field name", "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", 0, true, false},
		{"a tab inside a name is the parser's to refuse, as it does", "HTTP/1.1 200 OK\r\nX\tA: 1\r\n\r\n", 27, false, false},
		{"a length spelled with a space", "HTTP/1.1 200 OK\r\nContent Length: 5\r\nContent-Length: 2\r\n\r\nok", 0, true, false},
		{"a space inside a name, head not complete", "HTTP/1.1 200 OK\r\nX-B: 1\r\nX A: 1\r\n", 0, true, false},
		{"spaces in a value and a colon in it", "HTTP/1.1 200 OK\r\nX-A: a b: c\r\n\tfolded: d e\r\n\r\n", 46, false, false},
		{"no space after the colon, one in the value", "HTTP/1.1 200 OK\r\nX-A:a b\r\nContent-Length:2\r\n\r\nok", 46, false, false},
		{"a value that starts with a tab and a colon", "HTTP/1.1 200 OK\r\nX:\t: 1\r\n\r\n", 27, false, false},
		{"a space before the colon, none after", "HTTP/1.1 200 OK\r\nX-A :1\r\n\r\n", 0, true, false},
		{"a tab before the colon, none after", "HTTP/1.1 200 OK\r\nX-A\t:1\r\n\r\n", 0, true, false},
		{"after 100 Continue, a space inside a name", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", 0, true, false},
		{"both framings: the coding frames it, the connection closes after", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 66, false, true},
		{"a coding alone keeps the connection", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 47, false, false},
		{"100 Continue, then the answer's head", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 63, false, false},
		{"100 Continue, the answer's head not in yet", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0, false, false},
		{"100 Continue without a reason", "HTTP/1.1 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 43, false, false},
		{"after 100 Continue, two lengths", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok", 0, true, false},
		{"after 100 Continue, a bare LF", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok", 0, true, false},
		{"after 100 Continue, whitespace before a colon", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", 0, true, false},
		{"after 100 Continue, both framings", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 91, false, true},
		{"the 100's length is not the answer's", "HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 82, false, false},
		{"another 1xx is the answer, as the parser reads it", "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", 28, false, false},
		{"a code of 1000 is no 100", "HTTP/1.1 1000 X\r\n\r\nHTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", 19, false, false},
		{"bare LF blank line", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok\r\n\r\n", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end, closeAfter, err := CheckHead([]byte(tc.buf))
			if tc.bad {
				if !errors.Is(err, ErrFraming) {
					t.Fatalf("CheckHead = %d, %v; want ErrFraming", end, err)
				}
				return
			}
			if err != nil || end != tc.end || closeAfter != tc.close {
				t.Fatalf("CheckHead = %d, %t, %v; want %d, %t", end, closeAfter, err, tc.end, tc.close)
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
		"HTTP/1.1 200 OK\r\nContent-Length : 5\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
		"HTTP/1.1 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX\tA: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent Length: 5\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX(A): 1\r\nX\x01A: 2\r\nX\xc3\xa9: 3\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX-A: a b: c\r\n folded: d\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX-A:a b\r\nX:\t: 1\r\nX-B :1\r\nContent-Length:2\r\n\r\nok",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		end, _, err := CheckHead(buf)
		if err != nil || end == 0 {
			return
		}
		var h fasthttp.ResponseHeader
		br := bufio.NewReaderSize(bytes.NewReader(buf), len(buf)+16)
		if h.Read(br) != nil {
			return // not HTTP the parser takes: refused anyway
		}
		start := len(buf) - br.Buffered()
		if h.StatusCode() == fasthttp.StatusContinue {
			// The answer's head is next, as Response.ReadLimitBody reads.
			if h.Read(br) != nil {
				return
			}
		} else {
			start = 0
		}
		if used := len(buf) - br.Buffered(); used != end {
			t.Fatalf("CheckHead ends the head at %d, the parser at %d", end, used)
		}
		// RFC 9112 §5: a field name is a token. CheckHead looks for
		// whitespace only; the parser refuses the other bytes.
		for k, v := range h.All() {
			if !isToken(k) {
				t.Fatalf("a field name %q that is no token passed: %q", k, v)
			}
		}
		if n := h.ContentLength(); n >= 0 && bytes.Count(bytes.ToLower(buf[start:end]), []byte("\ncontent-length:")) > 1 {
			// Several fields passed: they must all say n.
			for _, line := range bytes.Split(buf[start:end], []byte("\r\n")) {
				if v, ok := bytes.CutPrefix(bytes.ToLower(line), []byte("content-length:")); ok && string(bytes.Trim(v, " \t")) != strconv.Itoa(n) {
					t.Fatalf("parser took %d, a field says %q", n, v)
				}
			}
		}
	})
}

// isToken reports whether b is a token (RFC 9110 §5.6.2): one or more of
// the visible ASCII characters other than the delimiters.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// BenchmarkCheckHead is what the check adds to every upstream answer on
// both transports: a typical service answer's head.
func BenchmarkCheckHead(b *testing.B) {
	buf := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: 0af7651916cd43dd8448eb211c80319c\r\n" +
		"Date: Sat, 05 Dec 2026 07:50:00 GMT\r\nContent-Length: 27\r\n\r\n{\"id\":7,\"status\":\"PENDING\"}")
	for b.Loop() {
		if _, _, err := CheckHead(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// The fasthttp pools' transport fails an answer CheckHead refuses with
// ErrFraming (not the deadline's ErrTimeout: it does not wait for more),
// closes its connection, and keeps one whose answer was whole and alone.
func TestTransportChecksTheHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted, closed := make(chan struct{}, 10), make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				last := ""
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						closed <- last // the client closed the connection
						return
					}
					last = req.URL.Path
					answers := map[string]string{
						"/ok":          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
						"/bare-lf":     "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
						"/cl-twice":    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
						"/left":        "HTTP/1.1 204 No Content\r\n\r\nleft over",
						"/spaced":      "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
						"/name-spaced": "HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok",
						"/continue-cl-twice": "HTTP/1.1 100 Continue\r\n\r\n" +
							"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
						"/te-cl": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n",
					}
					if _, err := io.WriteString(c, answers[req.URL.Path]); err != nil {
						return
					}
				}
			}()
		}
	}()
	r := &res{m: map[string][]Instance{"s": {{ID: "a", Addr: ln.Addr().String()}}}}
	e, _ := NewPool(r, []string{"s"}, ClientOptions{}).Service("s").Pick("", nil)
	do := func(path string) (*fasthttp.Response, error) {
		var req fasthttp.Request
		resp := &fasthttp.Response{}
		req.SetRequestURI("http://" + e.Addr + path)
		return resp, e.Client.DoDeadline(&req, resp, time.Now().Add(10*time.Second))
	}
	for range 2 {
		if resp, err := do("/ok"); err != nil || string(resp.Body()) != "ok" {
			t.Fatalf("/ok: %v %q", err, resp.Body())
		}
	}
	if n := len(accepted); n != 1 {
		t.Fatalf("two whole answers took %d connections, want 1", n)
	}
	for _, path := range []string{"/bare-lf", "/cl-twice", "/spaced", "/name-spaced", "/continue-cl-twice"} {
		if _, err := do(path); !errors.Is(err, ErrFraming) {
			t.Fatalf("%s: %v, want ErrFraming", path, err)
		}
		if got := <-closed; got != path {
			t.Fatalf("%s: the connection closed after %q", path, got)
		}
	}
	if resp, err := do("/left"); err != nil || resp.StatusCode() != 204 {
		t.Fatalf("/left: %v %d", err, resp.StatusCode())
	}
	if got := <-closed; got != "/left" {
		t.Fatalf("bytes left after an answer: the connection closed after %q", got)
	}
	// Both framings: the coding's body, and the connection not used again.
	if resp, err := do("/te-cl"); err != nil || string(resp.Body()) != "ok" {
		t.Fatalf("/te-cl: %v %q", err, resp.Body())
	}
	if got := <-closed; got != "/te-cl" {
		t.Fatalf("both framings: the connection closed after %q", got)
	}
}

// TestReadAnswerDropsTrailerFields: ReadAnswer reads what ReadLimitBody
// reads, to the same byte, but leaves a chunked answer's trailer fields out
// of the header (ReadLimitBody appends them to its fields, after the
// head's, from where they went out to the client as header fields).
func TestReadAnswerDropsTrailerFields(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
	for _, tc := range []struct {
		name, answer string
		head         bool     // a HEAD request's answer
		bad          bool     // both refuse it
		trailer      []string // the trailer's fields, last in ReadLimitBody's header
	}{
		{"length", "HTTP/1.1 200 OK\r\nX-Same: head\r\nContent-Length: 2\r\n\r\nok", false, false, nil},
		{"chunked, no trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, false, nil},
		{"chunked, trailer", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nX-Same: head\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\nX-Same: trailer\r\n\r\n", false, false, []string{"X-Sum: 1", "X-Same: trailer"}},
		{"after 100 Continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n", false, false, []string{"X-Sum: 1"}},
		{"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, false, nil},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", false, false, nil},
		{"malformed trailer line", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nno colon\r\n\r\n", false, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(f func(*fasthttp.Response, *bufio.Reader) error) (fields []string, body, rest string, err error) {
				var resp fasthttp.Response
				resp.SkipBody = tc.head
				br := bufio.NewReader(strings.NewReader(tc.answer + next))
				if err := f(&resp, br); err != nil {
					return nil, "", "", err
				}
				for k, v := range resp.Header.All() {
					fields = append(fields, string(k)+": "+string(v))
				}
				b, _ := io.ReadAll(br)
				return fields, string(resp.Body()), string(b), nil
			}
			want, wbody, wrest, werr := read(func(r *fasthttp.Response, br *bufio.Reader) error { return r.ReadLimitBody(br, 1<<20) })
			got, body, rest, err := read(func(r *fasthttp.Response, br *bufio.Reader) error { return ReadAnswer(r, br, 1<<20) })
			if (werr != nil) != tc.bad || (err != nil) != tc.bad {
				t.Fatalf("ReadLimitBody: %v, ReadAnswer: %v, want errors %v", werr, err, tc.bad)
			}
			if tc.bad {
				return
			}
			if n := len(want) - len(tc.trailer); n < 0 || !slices.Equal(want[n:], tc.trailer) {
				t.Fatalf("ReadLimitBody's fields %q do not end in the trailer's %q", want, tc.trailer)
			}
			if want = want[:len(want)-len(tc.trailer)]; !slices.Equal(got, want) {
				t.Errorf("fields %q, want %q", got, want)
			}
			if body != wbody || rest != wrest || rest != next {
				t.Errorf("body %q, left %q; want %q, left %q (the next answer)", body, rest, wbody, wrest)
			}
		})
	}
}

// TestReadAnswerDropsForbiddenTrailerFields: a trailer field whose name
// may not be a trailer's (RFC 9110 §6.5.1: framing, routing, request
// modifiers, authentication, response control, payload processing) is
// dropped with the rest of the section, and the answer, whose body came
// whole, is delivered. fasthttp's parser refuses such a section outright,
// which failed the whole answer (502); the gateway drops every trailer
// field anyway, and §6.5.1 lets a recipient drop these.
func TestReadAnswerDropsForbiddenTrailerFields(t *testing.T) {
	const (
		head = "HTTP/1.1 200 OK\r\nX-Same: head\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
		next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
	)
	for _, trailer := range []string{
		"Set-Cookie: sid=spoofed",
		"Location: https://evil.example/",
		"Content-Length: 99",
		"Transfer-Encoding: chunked",
		"Content-Type: text/html",
		"content-encoding: gzip",
		"Content-Range: bytes 0-1/2",
		"Authorization: Bearer x",
		"Cookie: a=b",
		"Host: evil.example",
		"Trailer: X-Sum",
		"Connection: close",
		"Keep-Alive: timeout=1",
		"Proxy-Connection: close",
		"Max-Forwards: 1",
		"Expect: 100-continue",
		"TE: trailers",
		"Upgrade: h2c",
		"Www-Authenticate: Basic",
		"X-Sum: 1\r\nSet-Cookie: a=b\r\nX-Same: trailer",
		"Set-Cookie: a=b\r\n folded: on",
	} {
		t.Run(trailer, func(t *testing.T) {
			var resp fasthttp.Response
			resp.Header.SetNoDefaultContentType(true)
			br := bufio.NewReader(strings.NewReader(head + trailer + "\r\n\r\n" + next))
			if err := ReadAnswer(&resp, br, 1<<20); err != nil {
				t.Fatalf("ReadAnswer: %v, want the answer", err)
			}
			var fields []string
			for k, v := range resp.Header.All() {
				fields = append(fields, string(k)+": "+string(v))
			}
			if want := []string{"X-Same: head", "Transfer-Encoding: chunked"}; !slices.Equal(fields, want) || string(resp.Body()) != "ok" {
				t.Errorf("fields %q, body %q; want %q, ok", fields, resp.Body(), want)
			}
			if rest, _ := io.ReadAll(br); string(rest) != next {
				t.Errorf("left %q, want the next answer", rest)
			}
		})
	}
}

// TestReadAnswerRefusesMalformedChunking: dropping trailer fields reads the
// section as strictly as the parser: a malformed chunk or trailer line
// still fails the answer (a 502), and an answer cut short is not complete.
func TestReadAnswerRefusesMalformedChunking(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct{ name, body string }{
		{"chunk size not hex", "zz\r\nok\r\n0\r\n\r\n"},
		{"chunk data longer than its size", "2\r\nokk\r\n0\r\n\r\n"},
		{"chunk size line in a bare LF", "2\nok\r\n0\r\n\r\n"},
		{"trailer line without a colon", "2\r\nok\r\n0\r\nSet-Cookie\r\n\r\n"},
		{"trailer starting with whitespace", "2\r\nok\r\n0\r\n Set-Cookie: a\r\n\r\n"},
		{"trailer name with a control", "2\r\nok\r\n0\r\nSet\x01Cookie: a\r\n\r\n"},
		{"trailer name with a separator", "2\r\nok\r\n0\r\nSet(Cookie): a\r\n\r\n"},
		{"trailer with an empty name", "2\r\nok\r\n0\r\n: a\r\n\r\n"},
		{"trailer line in a bare LF", "2\r\nok\r\n0\r\nX-Sum: 1\nX-B: 2\r\n\r\n"},
		{"trailer ended by a bare LF", "2\r\nok\r\n0\r\nX-Sum: 1\r\n\nX-B: 2\r\n\r\n"},
		{"trailer section over the read buffer", "2\r\nok\r\n0\r\nX-Sum: " + strings.Repeat("1", 8<<10) + "\r\n\r\n"},
		{"forbidden name, then a line without a colon", "2\r\nok\r\n0\r\nLocation: /x\r\nbad\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp fasthttp.Response
			if err := ReadAnswer(&resp, bufio.NewReader(strings.NewReader(head+tc.body)), 1<<20); err == nil {
				t.Fatalf("ReadAnswer took %q (body %q), want an error", tc.body, resp.Body())
			}
		})
	}
}
