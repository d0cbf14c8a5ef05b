package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
)

// ErrFraming: an upstream answer whose framing cannot be trusted. RFC 9112
// §6.3 makes a proxy close the connection, discard the answer and send 502.
var ErrFraming = errors.New("ambiguous framing")

// CheckHead looks at the start of an upstream answer, as far as it has
// arrived. It returns the length of the answer's head once the blank line
// ending it is in (0 before that), or an error as soon as a line of it ends
// in a bare LF, two Content-Length fields disagree, or a field's name holds
// whitespace. fasthttp's parser misses all three: it finds a head's end
// only at a CRLFCRLF, so a head in bare LFs waited for the deadline (504);
// it keeps the last of several lengths, waiting for bytes that never come
// or leaving some unread; and it keeps "Name :" and "X A:" as they came,
// which went on to the client (RFC 9112 §5.1: a proxy removes whitespace
// before the colon or, as here, refuses the answer; "Content-Length :" was
// another field beside the gateway's own length for a lenient client to
// frame by; a name is a token, §5, and "Content Length:" is none). Every
// other byte a token may not hold (HTAB inside a name, controls,
// separators, non-ASCII) the parser refuses itself, also a 502, so
// whitespace is all this looks for (a full token check added a quarter to
// a third per answer, BenchmarkCheckHead; this, nothing measurable), and
// FuzzCheckHead checks that every name the two pass is a token. After a
// 100 Continue the parse reads the next head as the answer (ReadAnswer,
// as Response.ReadLimitBody), so that head is checked too, and its end is returned.
//
// closeAfter is true for a head with both Transfer-Encoding and
// Content-Length: the coding frames it, but another hop may have framed it
// by the length, so the connection is not used again (RFC 9112 §6.3).
func CheckHead(buf []byte) (end int, closeAfter bool, err error) {
	var length []byte
	at, lines, coded := 0, 0, false
	for {
		i := bytes.IndexByte(buf[at:], '\n')
		if i < 0 {
			return 0, false, nil
		}
		line := buf[at : at+i]
		at += i + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return at, false, fmt.Errorf("%w: a line ends in a bare LF", ErrFraming)
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			if lines == 0 {
				continue // empty lines before the status line, which the parser skips
			}
			if lines < 0 { // the end of a 100 Continue: the answer's head is next
				lines, length, coded = 0, nil, false
				continue
			}
			return at, coded && length != nil, nil
		}
		if lines == 0 {
			lines = 1
			if continues(line) {
				lines = -1
			}
			continue
		}
		// Whitespace in the name: a space before the first colon, or a
		// tab just before it. Not in an obs-fold line (leading
		// whitespace), which continues the field before it. In the usual
		// "Name: value" the first space follows a colon with no tab
		// before it, and one search tells; otherwise the colon is looked
		// for too.
		if sp := bytes.IndexByte(line, ' '); line[0] != '\t' && sp != 0 && (sp < 2 || line[sp-1] != ':' || line[sp-2] == '\t') {
			if c := bytes.IndexByte(line, ':'); c > 0 && (uint(sp) < uint(c) || line[c-1] == '\t') {
				return at, false, fmt.Errorf("%w: whitespace in a field name: %q", ErrFraming, line)
			}
		}
		switch line[0] | 0x20 {
		case 'c':
			if v := fieldValue(line, "content-length:"); v != nil {
				if length != nil && !bytes.Equal(v, length) {
					return at, false, fmt.Errorf("%w: Content-Length %q and %q", ErrFraming, length, v)
				}
				length = v
			}
		case 't':
			coded = coded || fieldValue(line, "transfer-encoding:") != nil
		}
	}
}

// fieldValue returns the value of line when it is the field name (in
// lower case, with the colon), nil when it is another field.
func fieldValue(line []byte, name string) []byte {
	if len(line) < len(name) || line[len(name)-1] != ':' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return nil
	}
	return bytes.Trim(line[len(name):], " \t")
}

// continues reports whether a status line is 100 Continue's, as
// fasthttp's parser reads its code: the digits after the first space, then
// a space or the line's end.
func continues(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	code, n := 0, 0
	for _, b := range line[sp+1:] {
		if b < '0' || b > '9' {
			break
		}
		if code = code*10 + int(b-'0'); code > 100 {
			return false
		}
		n++
	}
	return code == 100 && (sp+1+n == len(line) || line[sp+1+n] == ' ')
}

// ReadAnswer reads an upstream answer from br into resp as
// Response.ReadLimitBody does, except for a chunked answer's trailer
// section, which is read and dropped (dropTrailer). ReadLimitBody appends
// its fields to resp's header, which the gateway sends before the body: a
// trailer field would pose as a header field the upstream never put in its
// head (RFC 9110 §6.5.2 forbids merging them), a CORS or security field,
// or a second value of one it did send. The gateway sends the buffered
// body with its own length, which leaves no trailer section to forward
// them in, and drops the Trailer field that announces them (hop-by-hop in
// proxy's list).
//
// It allocates nothing more than ReadLimitBody. resp.StreamBody is not
// supported (neither transport streams answers).
func ReadAnswer(resp *fasthttp.Response, br *bufio.Reader, maxBodySize int) error {
	resp.ResetBody()
	if err := resp.Header.Read(br); err != nil {
		return err
	}
	if resp.Header.StatusCode() == fasthttp.StatusContinue {
		// The final answer follows (ReadLimitBody does the same).
		if err := resp.Header.Read(br); err != nil {
			return err
		}
	}
	if code := resp.Header.StatusCode(); resp.SkipBody || code >= 100 && (code < 200 || code == 204 || code == 304) {
		return nil // no body, so no trailer either
	}
	if err := resp.ReadBody(br, maxBodySize); err != nil {
		return err
	}
	if resp.Header.ContentLength() != -1 {
		return nil
	}
	return dropTrailer(br)
}

// dropTrailer reads a chunked answer's trailer section from br, which
// holds what follows its last chunk's line, and drops it: every field
// line up to the blank line that ends the section.
//
// fasthttp's parser refuses a section holding a name that may not be a
// trailer's (Set-Cookie, Location, Content-Length, Host, Authorization,
// ...), which failed an answer whose body had come whole (502). RFC 9110
// §6.5.1 forbids such fields in a trailer and lets a recipient drop them,
// as every trailer field is dropped here, so the name is not looked at.
// The lines are held to what the parser takes otherwise: a name is a
// token (a space in it is taken, as the parser takes it), a line without
// a colon or a section starting with whitespace is refused, an obs-fold
// line continues the field before it. A line ending in a bare LF is
// refused, as in a head (CheckHead): the parser ended the section at the
// first blank line before the first CRLFCRLF, and the event loop waits
// for that CRLFCRLF (evloop's chunked), so the two could disagree on
// where the answer ends. A section cut short by the end of the input is
// no error: the body came whole (ReadLimitBody ignored it too, and the
// event loop waits for the rest, see evloop's chunked).
func dropTrailer(br *bufio.Reader) error {
	checked := 0 // the whole lines looked at so far
	for n := 1; ; n = br.Buffered() + 1 {
		_, err := br.Peek(n)
		buf, _ := br.Peek(br.Buffered())
		for {
			i := bytes.IndexByte(buf[checked:], '\n')
			if i < 0 {
				break
			}
			line, first := buf[checked:checked+i], checked == 0
			checked += i + 1
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return fmt.Errorf("%w: a trailer line ends in a bare LF", ErrFraming)
			}
			if line = line[:len(line)-1]; len(line) == 0 {
				_, _ = br.Discard(checked)
				return nil
			}
			if err := trailerLine(line, first); err != nil {
				return err
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil // cut short (see above)
		case errors.Is(err, bufio.ErrBufferFull):
			return fmt.Errorf("a trailer section over the %d-byte read buffer", br.Size())
		default:
			return fmt.Errorf("upstream trailer: %w", timeout(err))
		}
	}
}

// trailerLine checks one line of a trailer section (without its CRLF);
// first is the section's first line, which cannot continue another.
func trailerLine(line []byte, first bool) error {
	if line[0] == ' ' || line[0] == '\t' {
		if first {
			return fmt.Errorf("a trailer section starting with whitespace: %q", line)
		}
		return nil // obs-fold: the field before goes on
	}
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return fmt.Errorf("a malformed trailer line: %q", line)
	}
	for _, b := range line[:c] {
		if b >= 0x80 || tchar[b] == 0 && b != ' ' {
			return fmt.Errorf("a malformed trailer field name: %q", line[:c])
		}
	}
	return nil
}

// tchar marks the bytes a token may hold (RFC 9110 §5.6.2): the visible
// ASCII characters other than the delimiters.
var tchar = func() (t [0x80]byte) {
	for b := byte('!'); b < 0x7f; b++ {
		if !bytes.ContainsRune([]byte(`"(),/:;<=>?@[\]{}`), rune(b)) {
			t[b] = 1
		}
	}
	return t
}()

// transport is fasthttp's default HostClient transport (DefaultTransport,
// less what the pools do not use: stream bodies, ReadTimeout/WriteTimeout,
// MaxConnDuration) with checkHead before the answer is parsed, and the
// answer read by ReadAnswer (its trailer fields dropped): fasthttp
// has no hook inside its parse, and an answer it would wait on must fail
// at once. The pools never retry, so the retry flag is always false.
//
// One exception, which is no retry: a pooled connection the upstream had
// closed while it sat idle (sockio.ErrPeerClosed) took no byte of the
// request, so the request goes on a fresh connection, whatever its method
// (on the event loop such a connection leaves the pool when its close
// arrives). It was a 502 and a breaker failure, for POSTs too, which the
// chain does not retry. The pool's other idle connections to the endpoint
// are closed first: one closed by the upstream most often means the rest
// are too (an idle timeout hits them alike, a restart all of them), and
// each would otherwise cost a request this detour; a second such close,
// on the connection the second try takes (most often a fresh dial, or one
// another request returned to the pool meanwhile), fails the request. The
// second try has what is left of the request's timeout, not all of it.
type transport struct{}

func (tr transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	var deadline time.Time
	if t := req.GetTimeOut(); t > 0 {
		deadline = time.Now().Add(t)
	}
	err := tr.exchange(hc, req, resp, deadline)
	if errors.Is(err, sockio.ErrPeerClosed) {
		hc.CloseIdleConnections()
		err = tr.exchange(hc, req, resp, deadline)
	}
	return false, err
}

// exchange sends req on a pooled connection and reads the answer into resp.
func (transport) exchange(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	wait := req.GetTimeOut()
	if !deadline.IsZero() {
		wait = max(time.Until(deadline), time.Nanosecond) // a second try: what is left
	}
	call := callOf(req)
	cc, err := hc.AcquireConn(wait, req.ConnectionClose())
	if err != nil {
		return err
	}
	conn := cc.Conn()
	if call != nil {
		// Abandoned while it waited for the connection (nothing can end
		// that wait early): the connection goes back unused.
		if !call.attach(conn) {
			hc.ReleaseConn(cc)
			return ErrAbandoned
		}
		defer call.detach() // the error paths below close the connection
	}
	resp.ParseNetConn(conn)
	if err = conn.SetWriteDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return err
	}
	// The target goes upstream as the chain left it in the header:
	// HostClient parsed the URI before this (its scheme check), and
	// Request.Write writes a parsed URI's target, which has no '?' for an
	// empty query: "/a?" went upstream as "/a", another URI to a cache or
	// a signature (RFC 3986 §6.2.3 keeps a delimiter whose component is
	// empty). Setting it marks the URI unparsed, so Write takes the
	// header's target and Host as they are (the chain asks for the
	// client's Host, UseHostHeader); it copies nothing new.
	req.SetRequestURIBytes(req.Header.RequestURI())
	bw := hc.AcquireWriter(conn)
	if err = req.Write(bw); err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err == nil {
		err = conn.SetReadDeadline(deadline)
	}
	if err != nil {
		hc.CloseConn(cc)
		return timeout(err)
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	closeAfter, err := checkHead(br)
	if err == nil {
		err = ReadAnswer(resp, br, hc.MaxResponseBodySize)
	}
	left := br.Buffered()
	hc.ReleaseReader(br)
	if err != nil {
		hc.CloseConn(cc)
		return err
	}
	if call != nil && !call.detach() {
		// Abandoned after the answer was in: Abandon closed the
		// connection, and nobody reads the answer.
		hc.CloseConn(cc)
		return ErrAbandoned
	}
	// Bytes after the answer (a body the status says an answer cannot
	// have, a second answer) are no answer to anything: the connection is
	// not used again, as on the event loop; nor is one whose answer had
	// both framings (CheckHead).
	if req.ConnectionClose() || resp.ConnectionClose() || left > 0 || closeAfter {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return nil
}

// checkHead reads into br until it holds the answer's head, and checks it
// (CheckHead), returning CheckHead's closeAfter. A head larger than br's
// buffer is left to the parse, which reports it (ErrSmallBuffer) as before.
func checkHead(br *bufio.Reader) (bool, error) {
	for n := 1; ; {
		if _, err := br.Peek(n); err != nil {
			// Not read again by the parse: after sockio.ErrUnasked
			// another read would send the request it held back.
			if n == 1 && errors.Is(err, io.EOF) {
				return false, err
			}
			return false, fmt.Errorf("upstream answer: %w", timeout(err))
		}
		buf, _ := br.Peek(br.Buffered())
		end, closeAfter, err := CheckHead(buf)
		if err != nil || end > 0 || len(buf) == br.Size() {
			return closeAfter, err
		}
		n = len(buf) + 1
	}
}

// timeout is err, or fasthttp.ErrTimeout for a timeout, which the chain
// answers with 504 (as fasthttp's own transport reports it).
func timeout(err error) error {
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}
