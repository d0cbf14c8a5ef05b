package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrFraming: an upstream answer whose framing cannot be trusted. RFC 9112
// §6.3 makes a proxy close the connection, discard the answer and send 502.
var ErrFraming = errors.New("ambiguous framing")

// CheckHead looks at the start of an upstream answer, as far as it has
// arrived. It returns the length of the answer's head once the blank line
// ending it is in (0 before that), or an error as soon as a line of it ends
// in a bare LF, two Content-Length fields disagree, or a framing field's
// name ends in whitespace. fasthttp's parser misses all three: it finds a
// head's end only at a CRLFCRLF, so a head in bare LFs waited for the
// deadline (504); it keeps the last of several lengths, waiting for bytes
// that never come or leaving some unread; and it takes "Content-Length :"
// for another field, which went on to the client beside the gateway's own
// length for a lenient client to frame by (RFC 9112 §5.1).
func CheckHead(buf []byte) (int, error) {
	var length []byte
	at, lines := 0, 0
	for {
		i := bytes.IndexByte(buf[at:], '\n')
		if i < 0 {
			return 0, nil
		}
		line := buf[at : at+i]
		at += i + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return at, fmt.Errorf("%w: a line ends in a bare LF", ErrFraming)
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			if lines > 0 {
				return at, nil
			}
			continue // empty lines before the status line, which the parser skips
		}
		lines++
		var v []byte
		switch line[0] | 0x20 {
		case 'c':
			var ok bool
			if v, ok = framingField(line, "content-length"); !ok {
				return at, fmt.Errorf("%w: whitespace after a field name: %q", ErrFraming, line)
			}
		case 't':
			if _, ok := framingField(line, "transfer-encoding"); !ok {
				return at, fmt.Errorf("%w: whitespace after a field name: %q", ErrFraming, line)
			}
		}
		if v == nil {
			continue
		}
		if length != nil && !bytes.Equal(v, length) {
			return at, fmt.Errorf("%w: Content-Length %q and %q", ErrFraming, length, v)
		}
		length = v
	}
}

// framingField returns the value of line when it is the field name (in
// lower case), nil when it is another field, and false when it is the
// field with whitespace between name and colon.
func framingField(line []byte, name string) ([]byte, bool) {
	// The byte after the name first: most lines fail there.
	if len(line) <= len(name) || (line[len(name)] != ':' && line[len(name)] != ' ' && line[len(name)] != '\t') ||
		!bytes.EqualFold(line[:len(name)], []byte(name)) {
		return nil, true
	}
	rest := line[len(name):]
	if rest[0] != ':' {
		if rest = bytes.TrimLeft(rest, " \t"); len(rest) > 0 && rest[0] == ':' {
			return nil, false
		}
		return nil, true
	}
	return bytes.Trim(rest[1:], " \t"), true
}

// transport is fasthttp's default HostClient transport (DefaultTransport,
// less what the pools do not use: stream bodies, ReadTimeout/WriteTimeout,
// MaxConnDuration) with checkHead before the answer is parsed: fasthttp
// has no hook inside its parse, and an answer it would wait on must fail
// at once. The pools never retry, so the retry flag is always false.
type transport struct{}

func (transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	var deadline time.Time
	if t := req.GetTimeOut(); t > 0 {
		deadline = time.Now().Add(t)
	}
	cc, err := hc.AcquireConn(req.GetTimeOut(), req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)
	if err = conn.SetWriteDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return false, err
	}
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
		return false, timeout(err)
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	if err = checkHead(br); err == nil {
		err = resp.ReadLimitBody(br, hc.MaxResponseBodySize)
	}
	left := br.Buffered()
	hc.ReleaseReader(br)
	if err != nil {
		hc.CloseConn(cc)
		return false, err
	}
	// Bytes after the answer (a body the status says an answer cannot
	// have, a second answer) are no answer to anything: the connection is
	// not used again, as on the event loop.
	if req.ConnectionClose() || resp.ConnectionClose() || left > 0 {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// checkHead reads into br until it holds the answer's head, and checks it
// (CheckHead). A head larger than br's buffer is left to the parse, which
// reports it (ErrSmallBuffer) as before.
func checkHead(br *bufio.Reader) error {
	for n := 1; ; {
		if _, err := br.Peek(n); err != nil {
			// Not read again by the parse: after sockio.ErrUnasked
			// another read would send the request it held back.
			if n == 1 && errors.Is(err, io.EOF) {
				return err
			}
			return fmt.Errorf("upstream answer: %w", timeout(err))
		}
		buf, _ := br.Peek(br.Buffered())
		end, err := CheckHead(buf)
		if err != nil || end > 0 || len(buf) == br.Size() {
			return err
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
