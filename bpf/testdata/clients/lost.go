package main

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// lostCall makes a call whose exit never comes (its Transport's Proxy panics inside roundTrip; recovered here), so
// the probe keeps it in flight on this goroutine, then a call from the same frames through a RoundTripper of its own
// (forward) whose RoundTrip has net/http's (*Transport).RoundTrip's frame: the function it calls sits where the lost
// roundTrip's frame was and saves the same frame pointer. That call was taken for one nested in the lost call, and the
// call its Proxy makes for one nested in that, which took its place (one level kept): the forwarded call was never
// counted (include/calls.h, call_is_nested). Two calls, both counted.
func lostCall(ctx context.Context, c counts, base string) {
	lost := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		panic("clients: a Proxy panics")
	}}}
	inner := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	proxied := &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
		c.add("http", get(inner, r.Context(), base+"?status=200"))
		c["http 200"]++
		return nil, nil
	}}
	forwarding := &http.Client{Timeout: 10 * time.Second, Transport: &forward{to: proxied}}
	for _, hc := range []*http.Client{lost, forwarding} {
		func() {
			defer func() { recover() }()
			c.add("http", get(hc, ctx, base+"?status=404"))
			c["http 404"]++
		}()
	}
}

// forward is a RoundTripper that hands each request to another: its RoundTrip has the shape (and the frame) of
// net/http's (*Transport).RoundTrip, and calls a function of its own where that one calls roundTrip. The other is
// held as an interface so that its RoundTrip is not inlined here: roundTrip's exit then runs deeper than the lost
// call's frame, as the inner call's exit does (inlined, the exit came at the lost call's depth and ended the lost call
// instead, timed from its start: counted right, timed wrong).
type forward struct{ to http.RoundTripper }

func (f *forward) RoundTrip(req *http.Request) (*http.Response, error) {
	if f == nil {
		panic("clients: nil forward")
	}
	return f.roundTrip(req)
}

//go:noinline
func (f *forward) roundTrip(req *http.Request) (*http.Response, error) { return f.to.RoundTrip(req) }
