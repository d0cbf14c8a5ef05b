package evloop

import (
	"github.com/panjf2000/gnet/v2"
)

// The cap on client connections (Options.MaxClients) bounds what the
// budget leaves free: the first MaxHeaderBytes each connection holds, and
// the connection's own state (gnet's buffers, the client's request and
// response), some 21 KB a slow client (README, "What bounds it now").
// Without it 5,000 clients each sending a 16 KB head slowly grew VmRSS
// 101.3 MB, past the deployment's GOMEMLIMIT, however small the budget.
//
// Charging those bytes to the budget instead would not bound the state,
// and would let hostile clients that fill the budget deny every request,
// a GET's head included: the free bytes are there so that they cannot.
//
// A client over the cap is accepted, answered 503 gateway-busy and closed
// at once, holding nothing. nginx past worker_connections and Envoy past
// its connection limits close such a connection without a word (or leave
// it in the listen backlog); the answer tells a client it was the
// gateway's load, and Retry-After when to come back. Closed at once, not
// lingering: a lingering close would keep the connection (and what it
// sends) for up to Linger, which is what the cap is there to refuse; a
// client that sent its request before the answer may see a reset instead.

// admit counts a client connection opened; when the cap leaves no room
// for it, it is refused, uncounted: admit gives the answer for OnOpen to
// write and gnet.Close.
func (s *Server) admit(c gnet.Conn) ([]byte, gnet.Action) {
	n := s.conns.Add(1)
	if s.o.MaxClients <= 0 || n <= int64(s.o.MaxClients) {
		return nil, gnet.None
	}
	s.conns.Add(-1)
	s.connsRefused.Note(s.o.Log, "connection refused: the event loops hold as many client connections as they may",
		"peer", c.RemoteAddr().String(), "max_conns", s.o.MaxClients, "env", "GATEWAY_LOOP_MAX_CONNS")
	return s.fullAnswer, gnet.Close
}
