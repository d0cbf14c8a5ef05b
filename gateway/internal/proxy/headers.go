package proxy

import (
	"bytes"
	"iter"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// UserHeader carries the verified user id to upstreams. Clients can never set
// it: Sanitize removes every spelling of it before anything else runs.
const UserHeader = "X-User-ID"

// hopByHop are the RFC 9110 §7.6.1 connection-specific fields plus the
// de-facto ones (Keep-Alive, Proxy-Connection). A proxy must not forward them.
// hopConnection is the index of Connection: Sanitize reads it before
// deleting it.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

const hopConnection = 0

// fields is a set of header names found in one pass: bit i for
// hopByHop[i], userBit for an X-User-ID lookalike, foldBit for a name in
// folded with '_' for some '-'.
type fields uint16

const (
	userBit fields = 1 << len(hopByHop)
	foldBit fields = userBit << 1
)

// folded are the fields the gateway sets, or believes only from a trusted
// proxy, besides X-User-ID. A spelling with '_' for '-' (X_Forwarded_For)
// is dropped: CGI, PHP and WSGI servers read both spellings as one variable
// (HTTP_X_FORWARDED_FOR), so the client's could stand for the gateway's or
// beside it. nginx drops every name with '_' (underscores_in_headers off);
// the gateway drops these only.
var folded = [...]string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip",
	"x-request-id", "x-request-timeout-ms"}

// foldedLens has bit n set when a name in folded is n bytes long: most
// names are passed over on their length alone.
var foldedLens = func() (m uint32) {
	for _, name := range folded {
		m |= 1 << len(name)
	}
	return m
}()

// isFoldedSpelling says whether k is a name in folded with at least one
// '_' for a '-' (ASCII case ignored): the exact spellings are the chain's
// own business (SetForwarded, the request id, the deadline).
func isFoldedSpelling(k []byte) bool {
	if len(k) >= 32 || foldedLens&(1<<len(k)) == 0 || bytes.IndexByte(k, '_') < 0 {
		return false
	}
	for _, name := range folded {
		if foldsTo(k, name) {
			return true
		}
	}
	return false
}

// classifiedLens has bit n set when a name classify looks for (hopByHop,
// X-User-ID) is n bytes long: every field of every request and answer is
// classified, and most (Host, Accept, Authorization, Content-Type) are
// passed over on their length alone instead of ten comparisons.
var classifiedLens = func() (m uint32) {
	for _, name := range hopByHop {
		m |= 1 << len(name)
	}
	return m | 1<<len(UserHeader)
}()

// classify says which bit, if any, a header name belongs to. Names are
// compared ignoring ASCII case only: fasthttp's Del normalises a name
// (Keep-Alive) and removes exactly the entries stored under that form, all
// of which compare equal here, so a name this misses Del would miss too.
func classify(k []byte) fields {
	if len(k) >= 32 || classifiedLens&(1<<len(k)) == 0 {
		return 0
	}
	if isUserHeader(k) {
		return userBit
	}
	for i, name := range hopByHop {
		if asciiEqualFold(k, name) {
			return 1 << i
		}
	}
	return 0
}

// asciiEqualFold is bytes.EqualFold without Unicode folding (which matches
// the Kelvin sign to k, something no header parser does) and without
// converting name to bytes.
func asciiEqualFold[S string | []byte](b []byte, name S) bool {
	if len(b) != len(name) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// hopHeader is what dropHop needs of a request or response header.
type hopHeader interface {
	Peek(key string) []byte
	Del(key string)
	DelBytes(key []byte)
	ResetConnectionClose()
}

// dropHop deletes the hop-by-hop fields found (present) and, when
// Connection is among them, every field it names. Only present names are
// deleted: each Del is a scan of the whole header with its key normalised,
// and nine of them per request and per answer were most of the header
// hygiene's cost (bench/README.md, fifth pass). The client's or upstream's
// wish to close is hop-by-hop too: each side's connection is managed on its
// own. named says whether Connection named fields besides those.
func dropHop(h hopHeader, present fields) (named bool) {
	if present&(1<<hopConnection) != 0 {
		if conn := h.Peek("Connection"); namesOthers(conn) {
			named = true
			// Peek's slice is only valid until the header changes: copy.
			names := append([]byte(nil), conn...)
			for len(names) > 0 {
				var tok []byte
				tok, names = nextToken(names)
				if len(tok) > 0 && classify(tok)&^userBit == 0 && !isPinned(tok) {
					h.DelBytes(tok)
				}
			}
		}
	}
	dropHopFields(h, present)
	return named
}

// dropHopFields deletes the hop-by-hop fields found (present), but not the
// fields Connection names.
func dropHopFields(h hopHeader, present fields) {
	for i, name := range hopByHop {
		if present&(1<<i) != 0 {
			h.Del(name)
		}
	}
	h.ResetConnectionClose()
}

// namesOthers reports whether a Connection value names a field that is not
// hop-by-hop anyway: a hop-by-hop name (keep-alive above all, which nginx
// sends on every answer) is deleted by dropHop if present, and close is an
// option, not a field (RFC 9110 §7.6.1 reserves the name), so only the
// others need a copy of the list and a Del each.
func namesOthers(conn []byte) bool {
	for len(conn) > 0 {
		var tok []byte
		tok, conn = nextToken(conn)
		if len(tok) > 0 && classify(tok)&^userBit == 0 && !asciiEqualFold(tok, "close") && !isPinned(tok) {
			return true
		}
	}
	return false
}

// pinned are the fields no Connection list takes away, though RFC 9110
// §7.6.1 has a proxy drop every field it names: those the gateway forwards
// the message by. Host and Content-Length address and frame the request (a
// client's "Connection: Host" sent the upstream the endpoint's address as
// Host); X-Forwarded-For and -Proto are read after the drop (SetForwarded),
// from a trusted proxy in front, and named, the chain it wrote was gone and
// the upstream saw that proxy as the client. Go's ReverseProxy keeps Host
// and the length outside its header map and reads the prior
// X-Forwarded-For from the inbound request (ProxyRequest.In); nginx drops
// nothing a Connection names. The fields the gateway sets itself are set
// after the drop, or put back (the request id).
var pinned = [...]string{"Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto"}

// isPinned says whether tok names a field in pinned, in any ASCII case.
func isPinned(tok []byte) bool {
	for _, name := range pinned {
		if asciiEqualFold(tok, name) {
			return true
		}
	}
	return false
}

// listNames reports whether the comma-separated list names k, ignoring
// ASCII case.
func listNames(list string, k []byte) bool {
	for tok := range strings.SplitSeq(list, ",") {
		if asciiEqualFold(k, strings.TrimSpace(tok)) {
			return true
		}
	}
	return false
}

// Sanitize prepares a client request header for forwarding: it drops the
// hop-by-hop fields (and any field the Connection header names), and every
// field that would read as X-User-ID to some upstream framework: besides
// case, some stacks (CGI, nginx's underscores_in_headers) fold '_' into '-'.
// For the same reason it drops the '_' spellings of the fields in folded.
//
// One pass over the fields finds what is there; a request with none of
// them (the usual one) changes nothing and costs that pass only.
//
// named says whether the Connection field named fields besides the
// hop-by-hop ones, which are gone now: it may have named one the chain set
// before (the request id), which the caller puts back.
func Sanitize(h *fasthttp.RequestHeader) (named bool) {
	var present fields
	var names nameSet
	for k := range h.All() {
		present |= classify(k)
		if isFoldedSpelling(k) {
			present |= foldBit
		}
		names.add(k)
	}
	var kept keptLines
	if present != 0 {
		kept = keepOrder(h, names)
	}
	named = dropHop(h, present)
	if present&(userBit|foldBit) != 0 {
		var doomed [][]byte
		for k := range h.All() {
			if isUserHeader(k) || isFoldedSpelling(k) {
				doomed = append(doomed, append([]byte(nil), k...))
			}
		}
		h.Del(UserHeader)
		for _, k := range doomed {
			h.DelBytes(k)
		}
	}
	restore(kept, h)
	return named
}

// keepCookieLines puts the client's Cookie field lines back in h as they
// came, in order, each byte for byte. fasthttp parses a request's cookies
// the first time its header is walked (All, which every pass of the chain
// makes) and from then on writes them as it read them, in one line: "=v"
// went upstream as "v" (a cookie named v to most servers), quotes round a
// value were dropped, "a=1;b=2" respaced, empty pairs lost, two lines
// joined. The lines are read from the raw head the parser kept, through
// scratch (returned for reuse: the iterator must not see h change), and
// added as plain fields, which the header then writes as they are; its
// parsed cookies, which Cookie reads, are gone afterwards, so this comes
// after the last such read (the canary's). A header with no cookie left
// (none sent, or Connection named Cookie) is not touched.
func keepCookieLines(h *fasthttp.RequestHeader, scratch []byte) []byte {
	has := false
	for range h.Cookies() {
		has = true
		break
	}
	if !has {
		return scratch
	}
	scratch = scratch[:0]
	for k, v := range h.AllInOrder() {
		if asciiEqualFold(k, fasthttp.HeaderCookie) {
			// A field value holds no LF: it separates the lines here.
			scratch = append(append(scratch, v...), '\n')
		}
	}
	h.DelAllCookies()
	h.DisableSpecialHeader() // Add would parse the value into cookies again
	for rest := scratch; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		h.AddBytesKV(cookieKey, rest[:i])
		rest = rest[i+1:]
	}
	h.EnableSpecialHeader()
	return scratch
}

var cookieKey = []byte(fasthttp.HeaderCookie)

// keepEmptyLines puts back the client's User-Agent and Cookie lines whose
// value is empty, which fasthttp keeps apart from the other fields and
// writes only when non-empty: "User-Agent:" and "Cookie:" went upstream as
// no field at all. RFC 9110 §5.5 lets a field value be empty, and a proxy
// forwards the fields it does not act on; an empty field is not an absent
// one to what reads fields as sent (an HTTP message signature over it,
// RFC 9421 §2.1, fails when the field is gone; a bot check on User-Agent).
// Their grammars (a product, a cookie pair) want a value, but that is the
// upstream's to judge, as for any other field. An empty Content-Type is
// keepEmptyContentType's: start finds it in a pass it makes anyway.
//
// The lines are counted in the raw head by scanLines, in the pass start
// makes for the framing fields anyway (a pass of their own was about 5 %
// of BenchmarkChain/routing's CPU profile), and count only when the parser has no
// User-Agent, or no cookie (sent is sentOptional's). They are added as
// plain fields, as keepCookieLines adds cookies; a Cookie line among
// non-empty ones is keepCookieLines' to put back. Added before the
// hygiene, so that a Connection naming either still drops it.
func keepEmptyLines(h *fasthttp.RequestHeader, sent optional, lines headLines) {
	nua, ncookie := lines.emptyUA, lines.emptyCookie
	if sent&optCookie != 0 {
		ncookie = 0
	}
	if nua > 0 && len(h.UserAgent()) > 0 {
		nua = 0
	}
	if nua+ncookie == 0 {
		return
	}
	h.DisableSpecialHeader() // Add would take them for the parsed fields again
	for range nua {
		h.AddBytesKV(userAgentKey, nil)
	}
	for range ncookie {
		h.AddBytesKV(cookieKey, nil)
	}
	h.EnableSpecialHeader()
}

var userAgentKey = []byte(fasthttp.HeaderUserAgent)

// keepEmptyContentType puts back a request's Content-Type line whose value
// is empty, for start, which has seen that the head holds exactly one
// Content-Type line (scanLines) and the parser no value for it.
// fasthttp keeps Content-Type apart from the other fields, as it does
// User-Agent and Cookie (keepEmptyLines), and writes it only when
// non-empty, so "Content-Type:" went upstream as no field at all. The
// gateway still writes no media type the client did not send (step 6 in
// README.md): the field goes on as it came, empty, for the upstream to
// judge (RFC 9110 §8.3 gives an empty one no meaning; an upstream may refuse
// it, or a signature over the field, RFC 9421 §2.1, needs it present).
// Added as a plain field before the hygiene, so that a Connection naming it
// still drops it.
func keepEmptyContentType(h *fasthttp.RequestHeader) {
	h.DisableSpecialHeader() // Add would set the parsed field again
	h.AddBytesKV(contentTypeKey, nil)
	h.EnableSpecialHeader()
}

var contentTypeKey = []byte(fasthttp.HeaderContentType)

// emptyValue says whether line is the field name (lower case, with the
// colon) followed by nothing but whitespace and the line's CR.
func emptyValue(line []byte, name string) bool {
	if len(line) < len(name) || !asciiEqualFold(line[:len(name)], name) {
		return false
	}
	for _, b := range line[len(name):] {
		if b != ' ' && b != '\t' && b != '\r' {
			return false
		}
	}
	return true
}

// orderedHeader is a request or response header. keepOrder and restore
// are generic over the two, not written against an interface of their
// methods: through an interface h's iterators are calls the compiler cannot
// see into, so the loop bodies' stack buffers moved to the heap (7
// allocations a request).
type orderedHeader interface {
	*fasthttp.RequestHeader | *fasthttp.ResponseHeader
	All() iter.Seq2[[]byte, []byte]
	PeekKeys() [][]byte
	DelBytes(key []byte)
	AddBytesKV(key, value []byte)
}

// fieldLine is one copied field line.
type fieldLine struct{ name, value []byte }

// keptLines are the lines of every field a header held in more than one
// line, copied in order before fields were deleted (keepOrder).
type keptLines []fieldLine

// keepOrder copies, before fields of h are deleted, the lines of every
// field h holds in more than one line, so that restore can put their
// order back. fasthttp's Del moves the header's last field into the place
// of each one it deletes (delAllArgs), so deleting a field ahead of two
// lines of one name, the last of them last in the header, swapped those
// two: Keep-Alive, Via: a, Via: b went on as Via: b, Via: a. RFC 9110
// §5.3: the order of a field's lines is significant (Via, Warning,
// X-Forwarded-For).
//
// Callers that delete on every request pass the nameSet of a pass they
// make anyway (anyName when they made none): the names whose hashes met
// are then compared exactly, without allocating (PeekKeys reuses the
// header's own slice), and the lines copied only when a name does repeat.
// Common names share a hash (Sec-Fetch-Site and Sec-Fetch-Mode; Date, Vary
// and Strict-Transport-Security), so the comparison is the usual case of a
// request with a hop-by-hop field and must stay cheap.
//
// Left out: fields the header does not keep among its others, which Del
// never moves (an answer's Set-Cookie, a request's Cookie), and those
// AddBytesKV would not put back as they were (an answer's Date;
// Connection and Transfer-Encoding, hop-by-hop, deleted anyway).
func keepOrder[H orderedHeader](h H, names nameSet) keptLines {
	if names.dup == 0 {
		return nil
	}
	_, answer := any(h).(*fasthttp.ResponseHeader)
	if !repeats(h.PeekKeys(), names.dup, answer) {
		return nil
	}
	var all keptLines
	for k, v := range h.All() {
		all = append(all, fieldLine{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	var kept keptLines
	for i, l := range all {
		if !reorderable(l.name, answer) {
			continue
		}
		for j, o := range all {
			if j != i && asciiEqualFold(o.name, l.name) {
				kept = append(kept, l)
				break
			}
		}
	}
	return kept
}

// nameSet is a 64-bit set of field name hashes: added every name of a
// header, it tells, at a cost of a few operations a name, which hashes
// came twice (dup), and when none did, that no name repeats.
type nameSet struct {
	seen, dup uint64
}

// anyName is the nameSet of a header no pass looked at: any name may
// repeat.
var anyName = nameSet{dup: ^uint64(0)}

func (s *nameSet) add(k []byte) {
	bit := nameBit(k)
	s.dup |= s.seen & bit
	s.seen |= bit
}

// nameBit is k's bit in a nameSet.
func nameBit(k []byte) uint64 { return uint64(1) << (nameHash(k) & 63) }

// repeats says whether one of names whose bit is in dup, and that
// keepOrder keeps, comes twice.
func repeats(names [][]byte, dup uint64, answer bool) bool {
	for i, a := range names {
		bit := nameBit(a)
		if dup&bit == 0 || !reorderable(a, answer) {
			continue
		}
		for _, b := range names[i+1:] {
			if len(b) == len(a) && nameBit(b) == bit && asciiEqualFold(a, b) {
				return true
			}
		}
	}
	return false
}

// restore puts the kept lines whose names h still holds (in that exact
// spelling: every deletion removes a spelling whole) back in their order,
// after every other field. The order of fields of different names is not
// significant (RFC 9110 §5.3).
func restore[H orderedHeader](kept keptLines, h H) {
	if len(kept) == 0 {
		return
	}
	var live keptLines
	keys := h.PeekKeys()
	for _, l := range kept {
		for _, k := range keys {
			if string(k) == string(l.name) {
				live = append(live, l)
				break
			}
		}
	}
	for i, l := range live {
		if i == 0 || !seenName(live[:i], l.name) {
			h.DelBytes(l.name)
		}
	}
	for _, l := range live {
		h.AddBytesKV(l.name, l.value)
	}
}

// seenName says whether one of lines has exactly this name.
func seenName(lines keptLines, name []byte) bool {
	for _, l := range lines {
		if string(l.name) == string(name) {
			return true
		}
	}
	return false
}

// nameHash is a cheap hash of a name, ASCII case ignored: its length and
// its first, middle and last bytes.
func nameHash(k []byte) uint {
	if len(k) == 0 {
		return 0
	}
	return uint(len(k))*7 + uint(k[0]|0x20)*3 + uint(k[len(k)/2]|0x20)*5 + uint(k[len(k)-1]|0x20)
}

// reorderable says whether keepOrder keeps a field's lines in a request's
// or an answer's header (see there).
func reorderable(name []byte, answer bool) bool {
	if asciiEqualFold(name, "Connection") || asciiEqualFold(name, "Transfer-Encoding") {
		return false
	}
	if answer {
		return !asciiEqualFold(name, "Set-Cookie") && !asciiEqualFold(name, "Date")
	}
	return !asciiEqualFold(name, "Cookie")
}

// isUserHeader matches "x-user-id" ignoring case and treating '_' as '-'.
func isUserHeader(k []byte) bool { return foldsTo(k, "x-user-id") }

// foldsTo says whether k is want (lower case) ignoring ASCII case and
// treating '_' as '-'.
func foldsTo(k []byte, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i] | 0x20 // ASCII lower case; maps '-'(0x2d) to itself
		if k[i] == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// SanitizeResponse drops hop-by-hop fields from an upstream response. The
// server writes its own Connection and framing headers.
func SanitizeResponse(h *fasthttp.ResponseHeader) { sanitizeResponse(h) }

// sanitizeResponse is SanitizeResponse, and reports which of the fields
// decorate sets the upstream sent in another spelling than decorate's.
func sanitizeResponse(h *fasthttp.ResponseHeader) (respelled decorations) {
	var present fields
	odd := false
	var named []byte // what Connection fields name besides hop-by-hop ones
	var names nameSet
	for k, v := range h.All() {
		names.add(k)
		if f := classify(k) &^ userBit; f != 0 {
			present |= f
			odd = odd || string(k) != hopByHop[bits.TrailingZeros16(uint16(f))]
			if f == 1<<hopConnection && namesOthers(v) {
				// Read here, not by Peek("Connection"), which misses a
				// "connection" on an answer whose names are as sent. v is
				// only valid until the header changes: copy.
				named = append(append(named, ','), v...)
			}
		}
		respelled |= respelling(k)
	}
	var kept keptLines
	if present != 0 {
		kept = keepOrder(h, names)
	}
	dropHopFields(h, present)
	if odd || named != nil {
		// On the fasthttp transport the answer's names are as sent, and
		// Del removes only the canonical spelling, DelBytes only the exact
		// one: a "keep-alive" or "upgrade", or an "x-secret" Connection
		// names as X-Secret, went on to the client.
		list := string(named)
		dropSpellings(h, func(k []byte) bool {
			return odd && classify(k)&^userBit != 0 || listNames(list, k)
		})
	}
	restore(kept, h)
	return respelled
}

// decorations is a set of decorated's fields.
type decorations uint8

// decorated are the response fields decorate sets, as it spells them
// (fasthttp's canonical form, the form Go's net/http writes too). On the
// fasthttp transport the upstream's answer keeps its names as sent
// (upstream.Pool's clients do not normalise them), and a set replaces
// only a field spelled the same: an upstream's X-Request-ID or RateLimit
// went to the client beside the gateway's.
var decorated = [...]string{"X-Request-Id", "Ratelimit", "Ratelimit-Policy", "Access-Control-Allow-Origin",
	"Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"}

const (
	decRequestID decorations = 1 << iota
	decRateLimit
	decRateLimitPolicy
	decAllowOrigin
	decAllowCredentials
	decExposeHeaders
)

// respelling says which decorated field k is, if it is one in another
// spelling.
func respelling(k []byte) decorations {
	for i, name := range decorated {
		if len(k) == len(name) && asciiEqualFold(k, name) && string(k) != name {
			return 1 << i
		}
	}
	return 0
}

// dropRespelled deletes the fields of which that are spelled otherwise than
// decorated has them, before decorate sets its own.
func dropRespelled(h *fasthttp.ResponseHeader, which decorations) {
	kept := keepOrder(h, anyName)
	dropSpellings(h, func(k []byte) bool { return respelling(k)&which != 0 })
	restore(kept, h)
}

// dropSpellings deletes the fields whose names match, each by its exact
// spelling, as a header that does not normalise names (an upstream's
// answer on the fasthttp transport) deletes only that.
func dropSpellings(h *fasthttp.ResponseHeader, match func(k []byte) bool) {
	var doomed [][]byte
	for k := range h.All() {
		if match(k) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
	}
	for _, k := range doomed {
		h.DelBytes(k)
	}
}

// nextToken splits the next comma-separated token off a list, trimmed.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		tok, rest = list[:i], list[i+1:]
	} else {
		tok, rest = list, nil
	}
	return bytes.TrimSpace(tok), rest
}

// Trusted is the set of proxy networks whose X-Forwarded-For is believed.
type Trusted []netip.Prefix

// Contains reports whether ip is one of the trusted proxies.
func (t Trusted) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP finds the client's address. Only a trusted peer's
// X-Forwarded-For counts (all its field lines, joined: appendForwardedFor), and
// within it only the hops appended by trusted proxies: walking from the
// right, the first untrusted address is the client (anything left of it is
// client-controlled). An entry with a port (1.2.3.4:5678, [2001:db8::1]:443,
// as some proxies write it) counts as its address; a malformed entry stops
// the walk at the last address known good.
func (t Trusted) ClientIP(peer netip.Addr, xff []byte) netip.Addr {
	peer = peer.Unmap()
	if len(xff) == 0 || !t.Contains(peer) {
		return peer
	}
	client := peer
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		item := bytes.TrimSpace(xff[i+1:])
		if i < 0 {
			xff = nil
		} else {
			xff = xff[:i]
		}
		ip, err := netip.ParseAddr(string(item))
		if err != nil {
			ap, perr := netip.ParseAddrPort(string(item))
			if perr != nil {
				return client
			}
			ip = ap.Addr()
		}
		client = ip.Unmap()
		if !t.Contains(client) {
			return client
		}
	}
	return client
}

// SetForwarded writes X-Forwarded-For/-Proto for the upstream. From a
// trusted peer the chain (every X-Forwarded-For line, in order) is extended,
// and its X-Forwarded-Proto kept (of several lines, the last: the one the
// proxy nearest the gateway added); otherwise the client's claims are
// replaced by what the gateway saw. sent is sentOptional's: a field sent in
// more than one line is deleted before it is written, as SetCanonical
// replaces only the first, and the upstream would read the others.
//
// The keys are written in canonical form (no normalising per call), and an
// untrusted peer's claims are looked for in one pass and deleted only when
// present: three unconditional Dels cost more than the rest together.
func (t Trusted) SetForwarded(h *fasthttp.RequestHeader, peer netip.Addr, tls bool, sent optional, scratch []byte) []byte {
	peer = peer.Unmap()
	trusted := t.Contains(peer)
	scratch = scratch[:0]
	if trusted {
		if scratch = appendForwardedFor(scratch, h, sent); len(scratch) > 0 {
			scratch = append(scratch, ", "...)
		}
	}
	scratch = peer.AppendTo(scratch)
	chain := len(scratch)
	protoLines := sent&optForwardedProtoLines != 0
	keepProto := trusted && (protoLines || len(h.Peek("X-Forwarded-Proto")) > 0)
	if keepProto && protoLines {
		// Found before any Del: fasthttp's Del moves the fields left
		// behind, and the order of the lines with them.
		var last []byte
		for k, v := range h.All() {
			if string(k) == "X-Forwarded-Proto" {
				last = v
			}
		}
		scratch = append(scratch, last...)
	}
	// An untrusted peer's claims, looked for in one pass, when sent says
	// there is one, or a field whose lines keepOrder below must keep in
	// order (a pass per request for claims that almost never come was a
	// quarter of BenchmarkSetForwarded's time).
	var claims [len(untrustedClaims)]bool
	claimed := false
	names := anyName // a trusted peer's are not looked at
	if !trusted && sent&(optClaim|optForwardedForLines|optForwardedProtoLines) != 0 {
		names = nameSet{}
		for k := range h.All() {
			names.add(k)
			for i, name := range untrustedClaims {
				if asciiEqualFold(k, name) {
					claims[i], claimed = true, true
				}
			}
		}
	}
	// Every deletion first, between keepOrder and restore, then the sets:
	// a field set again after its lines were deleted is no line to put back.
	var kept keptLines
	if sent&(optForwardedForLines|optForwardedProtoLines) != 0 || claimed {
		kept = keepOrder(h, names)
	}
	if sent&optForwardedForLines != 0 {
		h.Del(fasthttp.HeaderXForwardedFor)
	}
	if protoLines {
		h.Del("X-Forwarded-Proto")
	}
	for i, name := range untrustedClaims {
		if claims[i] {
			h.Del(name)
		}
	}
	restore(kept, h)
	h.SetCanonical(xForwardedFor, scratch[:chain])
	switch {
	case keepProto && protoLines:
		h.SetCanonical(xForwardedProto, scratch[chain:])
	case keepProto:
	case tls:
		h.SetCanonical(xForwardedProto, protoHTTPS)
	default:
		h.SetCanonical(xForwardedProto, protoHTTP)
	}
	return scratch
}

// appendForwardedFor appends a trusted peer's X-Forwarded-For chain to dst:
// the field's one line, or, when sent says it came in several, all of them
// joined with ", " (RFC 9110 §5.3: field lines combine in order). A proxy
// that appends its own line (HAProxy's option forwardfor) leaves the
// client's first: read alone, that line let the client choose its address.
func appendForwardedFor(dst []byte, h *fasthttp.RequestHeader, sent optional) []byte {
	if sent&optForwardedForLines == 0 {
		return append(dst, h.Peek(fasthttp.HeaderXForwardedFor)...)
	}
	first := true
	for k, v := range h.All() {
		if string(k) == fasthttp.HeaderXForwardedFor {
			if !first {
				dst = append(dst, ", "...)
			}
			dst, first = append(dst, v...), false
		}
	}
	return dst
}

// untrustedClaims are what only a trusted proxy may tell upstreams.
// sentOptional marks them (optClaim) by their canonical spellings.
var untrustedClaims = [...]string{"Forwarded", "X-Real-IP", "X-Forwarded-Host"}

var (
	xForwardedFor   = []byte("X-Forwarded-For")
	xForwardedProto = []byte("X-Forwarded-Proto")
	protoHTTP       = []byte("http")
	protoHTTPS      = []byte("https")
	http10          = []byte("HTTP/1.0")
	http11          = []byte("HTTP/1.1")
)

// optional is the set of request fields the chain reads only when the client
// sent them, found in one pass. Each Peek copies and normalises its name and
// scans every field; the usual request carries none of these, so six Peeks
// per request (request id, traceparent, tracestate, timeout, release tag,
// cookie) found nothing (bench/README.md, sixth pass).
type optional uint32

const (
	optRequestID optional = 1 << iota
	optTraceparent
	optTracestate
	optTimeout
	optReleaseTag
	optCookie
	optIdempotencyKey
	// optSpacedName is no field but a name ending in whitespace ("X-User-ID :"),
	// which fasthttp's parser keeps as a name of its own. RFC 9112 §5.1
	// has servers refuse it: a lenient upstream would read such a name
	// as the field without the space, past Sanitize (X-User-ID) or the
	// gateway's framing (Transfer-Encoding, Content-Length).
	optSpacedName
	// optContinue is an Expect field saying 100-continue (any case), the
	// expectation the transports answer themselves (ExpectsContinue), if
	// it is the request's only one (loneExpect).
	optContinue
	// optForwardedForLines, optForwardedProtoLines: X-Forwarded-For or
	// X-Forwarded-Proto came in more than one field line (SetForwarded).
	optForwardedForLines
	optForwardedProtoLines
	// optForwardedFor, optForwardedProto: the field came at all, so that
	// a second line can be told from the first.
	optForwardedFor
	optForwardedProto
	// optTrailerMark is trailerMark: the request is chunked, and every
	// field after it came in its trailer section (MarkTrailer).
	optTrailerMark
	// optClaim is one of untrustedClaims (in any letter case: the parser
	// gives every valid name its canonical spelling): SetForwarded looks
	// for an untrusted peer's claims only in a request that has one.
	optClaim
	// optRequestIDLines, optTimeoutLines: X-Request-ID or
	// X-Request-Timeout-Ms came in more than one field line. The gateway
	// sets both for the upstream, and fasthttp's Set replaces a name's
	// first line only: the client's others went on beside the gateway's.
	optRequestIDLines
	optTimeoutLines
	// optTraceparentLines: Traceparent came in more than one field line;
	// the tracing gateway sets it for the upstream with Set too.
	optTraceparentLines
	// optTracestateLines: Tracestate came in more than one field line,
	// which W3C Trace Context reads as one list, the lines comma-joined
	// (RFC 9110 §5.3); Peek gives the first line only.
	optTracestateLines
	// optAuthorization, optAuthorizationLines: Authorization came, and in
	// more than one field line (refused: the chain verifies the first).
	optAuthorization
	optAuthorizationLines
)

// trailerMark names the field MarkTrailer adds. '(' is no token byte
// (RFC 9110 §5.6.2): both parsers refuse such a name, so no client can
// send it, in the head or in a trailer.
const trailerMark = "(trailer)"

// MarkTrailer is for the transports, between a request's head and its
// body: a chunked request gets trailerMark as its last field. fasthttp's
// parser appends the fields of a trailer section to the header after all
// of the head's (parseTrailer), where Peek and every other reader take them
// for header fields, which RFC 9110 §6.5.2 forbids: a trailer's
// X-Release-Tag steered the canary, its Idempotency-Key made a POST
// retryable. Nothing else tells them apart afterwards; Begin refuses a
// request with any field after the mark, and removes the mark.
func MarkTrailer(h *fasthttp.RequestHeader) {
	if h.ContentLength() == -1 {
		h.Add(trailerMark, "")
	}
}

// trailed says whether h holds trailerMark (the request is chunked) and
// whether a field follows it. The Connection that All yields after the
// parsed fields is the parser's own close (a trailer may not carry one: the
// parser refuses it).
func trailed(h *fasthttp.RequestHeader) (marked, trailer bool) {
	for k := range h.All() {
		switch {
		case marked && string(k) != fasthttp.HeaderConnection:
			return true, true
		case string(k) == trailerMark:
			marked = true
		}
	}
	return marked, false
}

// AdminFramed reports whether a request to an admin path may be answered
// outside the chain: one whose head Begin would take as it is, by Begin's
// own check (checkHead), so that the two cannot drift apart. Any other goes
// to the chain, which refuses it (400, 501) and closes the connection, or
// answers and closes where its framing is ambiguous, as on every path.
// Answered outside the chain with the connection kept, the bytes a lenient
// hop in front framed as such a request's body ("Content-Length : 51") were
// read as the next request and proxied. Trailer fields are AdminTrailer's
// to refuse, once the body is read. It walks the fields, so it is asked
// only of requests to admin paths.
func AdminFramed(h *fasthttp.RequestHeader) bool {
	c := checkHead(h, sentOptional(h), false, scanLines(h.RawHeaders()))
	return c.fault == headSound && !c.ambiguous && !c.asterisk
}

// AdminTrailer is for the admin paths (/healthz, /readyz), which the
// transports answer outside the chain: it removes the trailer mark
// (MarkTrailer), closes the connection after a chunked request as Begin
// does on every other path, and, when fields came in a chunked request's trailer
// section, answers 400 malformed-request with the connection closed, as
// Begin does for any other path, and reports true. Without it the mark
// and those fields went on to the admin handlers: nothing read the mark,
// but /metrics' net/http adapter (on this port until it moved to the admin
// listener) copied every field into the request's header, where a
// trailer's Accept-Encoding: gzip chose the answer's coding (RFC 9110
// §6.5.2: trailer fields are no header fields).
func AdminTrailer(ctx *fasthttp.RequestCtx) bool {
	// Asked of every admin request, chunked or not: once its body is read
	// a chunked request has the length it came to (0 without a body), so
	// the length cannot tell. Two walks of the fields, on admin paths only.
	h := &ctx.Request.Header
	chunked, trailer := trailed(h)
	h.Del(trailerMark)
	if chunked {
		// Answered here, but closed after, as Begin closes after every
		// chunked request (checkHead's closes).
		ctx.SetConnectionClose()
	}
	if !trailer {
		return false
	}
	writeProblem(&ctx.Response, h.RequestURI(), fasthttp.StatusBadRequest, "malformed-request", "the request has fields in its chunked trailer section")
	ctx.SetConnectionClose()
	return true
}

// loneExpect says whether h holds exactly one Expect field. The transports'
// 100 follows the first one (ExpectsContinue, and the fasthttp server's
// MayContinue, look with Peek), and a field deleted by name goes with every
// other of that name: a 100-continue beside another expectation is not the
// gateway's to drop, and the fields go on as sent, for the upstream to meet
// or refuse (417). Asked only once a 100-continue field was seen, so the
// usual request does not pay for this second pass.
func loneExpect(h *fasthttp.RequestHeader) bool {
	n := 0
	for k := range h.All() {
		if string(k) == fasthttp.HeaderExpect {
			n++
		}
	}
	return n == 1
}

// sentOptional finds which optional fields h holds. Names are compared in
// fasthttp's canonical form, the form Peek normalises its key to and the
// parser stores names in, so a field found here is one Peek finds, and a
// field missed here Peek misses too. The gateway adds some of these fields
// itself later; the set is about what the client sent and is read before
// that.
func sentOptional(h *fasthttp.RequestHeader) (sent optional) {
	for k, v := range h.All() {
		switch string(k) {
		case trailerMark:
			// What follows came in a chunked trailer section, no header
			// field (see MarkTrailer).
			return sent | optTrailerMark
		case "X-Request-Id":
			if sent&optRequestID != 0 {
				sent |= optRequestIDLines
			}
			sent |= optRequestID
		case "Traceparent":
			if sent&optTraceparent != 0 {
				sent |= optTraceparentLines
			}
			sent |= optTraceparent
		case "Tracestate":
			if sent&optTracestate != 0 {
				sent |= optTracestateLines
			}
			sent |= optTracestate
		case "X-Request-Timeout-Ms":
			if sent&optTimeout != 0 {
				sent |= optTimeoutLines
			}
			sent |= optTimeout
		case "Authorization":
			if sent&optAuthorization != 0 {
				sent |= optAuthorizationLines
			}
			sent |= optAuthorization
		case "X-Release-Tag":
			sent |= optReleaseTag
		case "Cookie":
			sent |= optCookie
		case "Idempotency-Key":
			sent |= optIdempotencyKey
		case "Expect":
			if bytes.EqualFold(v, continueValue) {
				sent |= optContinue
			}
		case "X-Forwarded-For":
			if sent&optForwardedFor != 0 {
				sent |= optForwardedForLines
			}
			sent |= optForwardedFor
		case "X-Forwarded-Proto":
			if sent&optForwardedProto != 0 {
				sent |= optForwardedProtoLines
			}
			sent |= optForwardedProto
		case "Forwarded", "X-Real-Ip", "X-Forwarded-Host": // untrustedClaims, canonical
			sent |= optClaim
		}
		if len(k) > 0 && k[len(k)-1] == ' ' {
			sent |= optSpacedName
		}
	}
	return sent
}
