package evloop

import "strconv"

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
// wherever it meets what the parser refuses, or the last chunk, it asks
// for the parse: a verdict is never later than the parser's own
// (TestChunkWalkAgreesWithTheParser). The trailer after the last chunk is
// left to the parser.
type chunked struct {
	start int // where the body starts in the connection's input; 0: not followed
	at    int // where the next chunk-size line starts, from start
	seen  int // how far that line is known sound, from start: a long one is not searched again
	data  int // the chunks' data so far
}

// maxChunkDigits is fasthttp's maxHexIntChars: one digit more is refused.
const maxChunkDigits = strconv.IntSize/4 - 1

// need walks on through buf, the message from its start, and returns how
// much of it must be in before a parse can succeed, or 0 to parse now.
func (c *chunked) need(buf []byte, limit int) int {
	for {
		at := c.start + c.at
		if at > len(buf) {
			return at
		}
		if c.at > 0 && (buf[at-2] != '\r' || buf[at-1] != '\n') {
			return 0 // a chunk's data not followed by CRLF
		}
		i := at
		for i < len(buf) && i-at <= maxChunkDigits && unhex(buf[i]) >= 0 {
			i++
		}
		digits := i - at
		switch {
		case digits > maxChunkDigits:
			return 0
		case i == len(buf):
			return len(buf) + 1
		case digits == 0:
			return 0
		}
		i = max(i, c.start+c.seen)
		for i < len(buf) && buf[i] != '\r' && buf[i] != '\n' {
			i++
		}
		c.seen = i - c.start
		switch {
		case i == len(buf):
			return len(buf) + 1
		case buf[i] == '\n':
			return 0
		case i+1 == len(buf):
			return len(buf) + 1
		case buf[i+1] != '\n':
			return 0
		}
		size := 0
		for _, b := range buf[at : at+digits] {
			size = size<<4 | unhex(b)
		}
		if size == 0 || limit > 0 && c.data+size > limit {
			return 0 // the last chunk (its trailer is the parser's), or a body over the limit
		}
		c.data += size
		c.at = i + 2 + size + 2 - c.start
		c.seen = c.at
		if c.start+c.at > len(buf) {
			return c.start + c.at
		}
	}
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
