package evloop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

// chunked follows a chunked body's framing as it arrives, so that the
// message is parsed again only once it could be complete. fasthttp parses
// a message from its start every time, and parsing at every read made the
// work grow with the square of the body: a 15 MiB answer arriving in 4 KiB
// reads took 1.2 s of CPU (fasthttp's own client: 0.05 s), and a client's
// chunked request could make the gateway work as hard. Walking the chunk
// lines costs a look at each line, once, and a jump over each chunk's data.
//
// The walk takes lines as fasthttp's parser does (parseChunkSize: hex
// digits, an extension up to a CR, then CRLF; the data, then CRLF; at most
// maxChunkDigits digits; the body limit checked at each size line), and
// wherever it meets what the parser refuses, or the end of the trailer
// section after the last chunk, it asks for the parse: a verdict is never
// later than the parser's own (TestChunkWalkAgreesWithTheParser). The
// trailer's fields are left to the parser, but not where it ends: fasthttp
// takes the end of its input right after the last chunk's line for the end
// of the message, with none or half of the trailer in, so a parse there
// forwarded a request without its trailer and read the trailer as the
// next request (a 400 and a close; TestTrailerSplitAnywhere).
//
// While it is followed the message is held here (msg), out of gnet's
// buffer: gnet's Peek copies all the unread input into one new slice
// whenever it spans reads, so a message left there cost a copy of all of
// it at every look, the square of its size again (0.44 s of CPU for that
// 15 MiB answer, parses gone). Each read is looked at once, appended to
// msg and taken from the connection (hold), and the parse reads msg.
type chunked struct {
	start int    // where the body starts in the message; 0: not followed
	at    int    // where the next chunk-size line starts, from start
	seen  int    // how far that line is known sound, from start: a long one is not searched again
	tail  int    // how far the trailer section was searched for its end, from start
	data  int    // the chunks' data so far
	count int    // the chunks so far, the last one's line excluded
	msg   []byte // the message so far, once followed
}

// hold adds in, the connection's unread input, to the message held so
// far, and returns the message and how much of it was held before.
func (c *chunked) hold(in []byte) (msg []byte, held int) {
	held = len(c.msg)
	c.msg = append(c.msg, in...)
	return c.msg, held
}

// follow is a look at a followed message: in, conn's unread input, is
// held (and taken from conn) unless the message could be complete with
// it. more is how much more input conn must hold before the next look, 0
// when the message (msg, of which held was held before) is to be parsed;
// an error refuses it. limit bounds the body, maxTrailer the trailer
// section (Options.MaxHeaderBytes).
func (c *chunked) follow(conn gnet.Conn, in []byte, limit, maxTrailer int) (msg []byte, held, more int, err error) {
	msg, held = c.hold(in)
	need, err := c.need(msg, limit, maxTrailer)
	if err == nil && need > 0 {
		_, _ = conn.Discard(len(msg) - held)
		return msg, held, need - len(msg), nil
	}
	return msg, held, 0, err
}

// maxChunkLine bounds a chunk-size line, extension and CRLF included, as
// net/http bounds it. fasthttp's parser takes any length, and its own
// server keeps none of the line; the loop keeps a message's bytes until it
// parses, so a line that never ended grew the connection's buffer until
// the read timeout (5 s at line rate). Only a message arriving in pieces
// is walked, and so bounded: one whose first read holds it whole is the
// parser's.
const maxChunkLine = 4 << 10

var errChunkLine = fmt.Errorf("a chunk-size line over %d bytes", maxChunkLine)

// errFraming refuses a chunked body whose framing has grown past the body
// limit and one longest line beyond the least its chunks need (a size line
// and two CRLFs: 5 bytes a chunk of 1 to 15 bytes), as a body over the
// limit is refused (413 for a request, 502 for an answer). Each line is
// bounded, and the data by the limit, but not how many lines there are, and
// the loop keeps every byte of the message until it parses it: one client
// sending 1-byte chunks with 4 KiB extensions grew the gateway's memory by
// 600 MB in the 5 s of its read timeout, past the container's limit;
// fasthttp's server keeps no line, only the data. Bounding all the framing
// by the limit instead refused 1-byte chunks without extensions from a
// fifth of the limit on, which fasthttp takes to the limit (a streaming
// client's or an upstream's token-by-token answer): only what is beyond
// that least (extensions, leading zeros) is bounded. The trade-off: a
// message the loop holds stays under 7 times the limit and 4 KiB (the
// limit in 1-byte chunks, 5 bytes of framing each, and the extensions).
var errFraming = fasthttp.ErrBodyTooLarge

// errTrailerPending is a parse that took a chunked message as whole
// before its trailer section ended (see chunked): more must come.
var errTrailerPending = fmt.Errorf("chunked message parsed before its trailer section ended: %w", io.ErrUnexpectedEOF)

// errBareLF refuses a chunked message with a bare LF (no CR before it) in
// its trailer section: 400 and a close for a request, 502 for an answer.
// RFC 9112 §2.2 lets a recipient take a bare LF for CRLF, and fasthttp's
// parser ends the section at one ("0\r\n\n"), but a hop in front that
// wants CRLF reads the bytes after it as more of the trailer, where the
// parser reads them as the next request: two answers to the one it sent.
// No client or upstream of the platform sends one. The fasthttp transport
// cannot see how the section ended and takes it, but closes the connection
// after every chunked request, as both transports do (proxy's checkHead),
// so nothing after the LF is read as a request there either.
var errBareLF = errors.New("a bare LF in a chunked trailer section")

var crlfCRLF = []byte("\r\n\r\n")

// trailerEnd checks msg, a chunked message the parser took whole: nil when
// it ends where its trailer section ends, at a CRLFCRLF; errBareLF when
// the parser ended the section at a blank line with a bare LF in it or
// before it ("\r\n\n", "\n\r\n"), where a hop that wants CRLF reads on;
// else errTrailerPending. A last-chunk line cannot end with a CRLFCRLF, nor
// have an LF before its CRLF (its extension stops at the first CR), so a
// message the parser cut right after that line is pending.
func trailerEnd(msg []byte) error {
	switch {
	case bytes.HasSuffix(msg, crlfCRLF):
		return nil
	case bytes.HasSuffix(msg, lfCRLF), bytes.HasSuffix(msg, []byte("\n")) && !bytes.HasSuffix(msg, crlfCRLF[2:]):
		return errBareLF
	}
	return errTrailerPending
}

var lfCRLF = []byte("\n\r\n")

// maxChunkDigits is fasthttp's maxHexIntChars: one digit more is refused.
const maxChunkDigits = strconv.IntSize/4 - 1

// need walks on through buf, the message from its start, and returns how
// much of it must be in before a parse can succeed, or 0 to parse now; an
// error for a chunk-size line over maxChunkLine or a trailer section over
// maxTrailer.
func (c *chunked) need(buf []byte, limit, maxTrailer int) (int, error) {
	for {
		at := c.start + c.at
		if at > len(buf) {
			return at, nil
		}
		if c.at > 0 && (buf[at-2] != '\r' || buf[at-1] != '\n') {
			return 0, nil // a chunk's data not followed by CRLF
		}
		i := at
		for i < len(buf) && i-at <= maxChunkDigits && unhex(buf[i]) >= 0 {
			i++
		}
		digits := i - at
		switch {
		case digits > maxChunkDigits:
			return 0, nil
		case i == len(buf):
			return len(buf) + 1, nil
		case digits == 0:
			return 0, nil
		}
		i = max(i, c.start+c.seen)
		for i < len(buf) && buf[i] != '\r' && buf[i] != '\n' && i-at <= maxChunkLine-2 {
			i++
		}
		if i-at > maxChunkLine-2 {
			return 0, errChunkLine
		}
		c.seen = i - c.start
		switch {
		case i == len(buf):
			return len(buf) + 1, nil
		case buf[i] == '\n':
			return 0, nil
		case i+1 == len(buf):
			return len(buf) + 1, nil
		case buf[i+1] != '\n':
			return 0, nil
		}
		least := 5*c.count + 3 // this line's digit and CRLF, and each chunk before
		if extra := i + 2 - c.start - c.data - least; limit > 0 && extra > limit+maxChunkLine {
			return 0, fmt.Errorf("a chunked body's framing %d bytes over the least its chunks need: %w", extra, errFraming)
		}
		size := 0
		for _, b := range buf[at : at+digits] {
			size = size<<4 | unhex(b)
		}
		if size == 0 {
			return c.trailer(buf, i, maxTrailer)
		}
		if limit > 0 && c.data+size > limit {
			return 0, nil // a body over the limit
		}
		c.data += size
		c.count++
		c.at = i + 2 + size + 2 - c.start
		c.seen = c.at
		if c.start+c.at > len(buf) {
			return c.start + c.at, nil
		}
	}
}

// trailer looks for the end of the trailer section after the last chunk,
// whose line's CRLF starts at crlf: the first CRLFCRLF from there, which
// is that CRLF and a blank line when there are no fields, as the parser
// finds it (headerScanner). It returns 0 to parse once it is in.
//
// maxTrailer bounds a trailer section arriving in pieces: it is the
// loop's MaxHeaderBytes, the size of the parser's read buffer, past which
// the parser refuses a trailer anyway; without a bound, one that never
// ended was kept until the read timeout, as a chunk-size line was. (It was
// the default 16 KiB, whatever MaxHeaderBytes said: a raised limit still
// refused a trailer the parser would have taken.)
func (c *chunked) trailer(buf []byte, crlf, maxTrailer int) (int, error) {
	from := max(crlf, c.start+c.tail-len(crlfCRLF)+1)
	end := bytes.Index(buf[from:], crlfCRLF)
	if end >= 0 {
		end += from + len(crlfCRLF)
	}
	section := buf // up to its end: what comes after is the next message's
	if end >= 0 {
		section = buf[:end]
	}
	if bareLF(section, max(crlf+2, c.start+c.tail)) {
		return 0, errBareLF
	}
	if end >= 0 {
		return 0, nil
	}
	if len(buf)-(crlf+2) > maxTrailer {
		return 0, fmt.Errorf("a chunked trailer section over %d bytes (MaxHeaderBytes)", maxTrailer)
	}
	c.tail = len(buf) - c.start
	return len(buf) + 1, nil
}

// bareLF says whether b has an LF without a CR before it at or after from
// (from > 0: the byte before it is looked at).
func bareLF(b []byte, from int) bool {
	for from < len(b) {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return false
		}
		if b[from+i-1] != '\r' {
			return true
		}
		from += i + 1
	}
	return false
}

// unhex is the value of a hex digit, -1 for any other byte.
func unhex(b byte) int {
	switch {
	case '0' <= b && b <= '9':
		return int(b - '0')
	case 'a' <= b && b <= 'f':
		return int(b-'a') + 10
	case 'A' <= b && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}
