package authn

import "time"

// CachedSubject answers from pkg/auth's verified-token cache alone, at now
// (the caller's clock reading; an entry holds for seconds past exp at the
// least, so a reading microseconds old answers the same): ok false means
// Subject must verify the token, which may fetch the key set. The
// event-loop transport calls it on the loop and hands the request to a
// goroutine only when it says false. A missing token is decided here too
// (ErrNoToken).
func (v Verifier) CachedSubject(token []byte, now time.Time) (subject string, ok bool, err error) {
	if len(token) == 0 {
		return "", true, ErrNoToken
	}
	c, ok := v.V.CachedBytesAt(token, now)
	return c.Subject, ok, nil
}
