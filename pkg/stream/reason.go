package stream

import (
	"fmt"
	"unicode/utf8"
)

// MaxReason bounds the text of a termination's reason (TermWithReason) and
// of the dead letter that records it. Such a reason quotes what the message
// carried (%q can triple a field: a control character is six bytes as
// \u0085), which a hostile publisher makes as large as a message may be;
// the server takes the reason as a message and refuses one over its
// max_payload (1 MB by default). The termination then failed, the message
// stayed unsettled and came back on the back-off, each time dropped or
// dead-lettered again, and after the last delivery it held an ack-pending
// slot for good. The payload itself is never clipped.
const MaxReason = 1 << 10

// ClipReason returns err with its text cut to MaxReason bytes on a rune
// boundary, followed by a note of its full length (so at most MaxReason
// plus about 30 bytes); a shorter text is unchanged. errors.Is and
// errors.As still see err. A nil err stays nil.
func ClipReason(err error) error {
	if err == nil {
		return nil
	}
	return clipped{err}
}

// clipped is ClipReason's error.
type clipped struct{ err error }

func (c clipped) Unwrap() error { return c.err }

func (c clipped) Error() string {
	s := c.err.Error()
	if len(s) <= MaxReason {
		return s
	}
	cut := MaxReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes in all)", s[:cut], len(s))
}
