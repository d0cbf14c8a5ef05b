package proxy

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// ProblemBase prefixes the problem "type" URIs the gateway emits.
const ProblemBase = "https://shanhai.dev/problems/"

// writeProblem answers with an RFC 9457 problem document. pkg/problem does the
// same for gin; the gateway serves fasthttp, so it writes the few fields it
// needs by hand (no reflection on the error path either).
//
// uri is the request target, quoted as the "instance".
func writeProblem(resp *fasthttp.Response, uri []byte, status int, slug, detail string) {
	resp.ResetBody()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/problem+json")
	b := resp.Body()[:0]
	b = append(b, `{"type":`...)
	b = appendJSONString(b, ProblemBase+slug)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, fasthttp.StatusMessage(status))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, detail)
	}
	b = append(b, `,"instance":`...)
	b = appendJSONBytes(b, uri)
	b = append(b, '}')
	resp.SetBodyRaw(b)
}

func appendJSONString(b []byte, s string) []byte { return appendJSONBytes(b, []byte(s)) }

// appendJSONBytes quotes s as a JSON string; invalid UTF-8 becomes U+FFFD so
// hostile request targets cannot break the document.
func appendJSONBytes(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\\ufffd"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// ConnsFullAnswer is the whole answer, Connection: close, to a client
// connection refused over the cap on client connections (ErrConnsFull),
// for a transport to write before it closes the connection: made once,
// the same bytes on both transports. Without a Date: made once, fasthttp's
// would say the start's time for the gateway's whole life, and a 5xx may
// go without one (RFC 9110 §6.6.1), a wrong one may not.
func ConnsFullAnswer() []byte {
	var req fasthttp.Request
	var resp fasthttp.Response
	Reject(&req, &resp, ErrConnsFull)
	resp.SetConnectionClose()
	b := []byte(resp.String())
	if i := bytes.Index(b, []byte("\r\nDate: ")); i >= 0 {
		if n := bytes.Index(b[i+2:], []byte("\r\n")); n >= 0 {
			b = append(b[:i], b[i+2+n:]...)
		}
	}
	return b
}
