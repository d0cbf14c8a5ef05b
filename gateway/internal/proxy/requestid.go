package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// RequestIDHeader is accepted from clients when well-formed and generated
// otherwise, forwarded upstream and echoed in the response.
const RequestIDHeader = "X-Request-ID"

// idPrefix makes ids unique across processes; the counter makes them unique
// within one without a random read per request.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() []byte {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return append([]byte(hex.EncodeToString(b[:])), '-')
}

// appendRequestID appends a fresh id to dst.
func appendRequestID(dst []byte) []byte {
	dst = append(dst, idPrefix...)
	return strconv.AppendUint(dst, idCounter.Add(1), 36)
}

// validRequestID accepts ids a log line or header can carry safely.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
