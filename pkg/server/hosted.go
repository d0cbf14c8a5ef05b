package server

import "context"

type hostedKey struct{}

// Hosted marks ctx for a server that another program hosts together with
// other servers in one process (cmd/shanhai runs the whole platform so). A
// Server run under it does not watch SIGINT/SIGTERM: every server would see
// the same signal and all would stop at once, while the host stops them one
// by one in its order (gateway first) by cancelling each one's ctx.
func Hosted(ctx context.Context) context.Context {
	return context.WithValue(ctx, hostedKey{}, true)
}

func hostHandlesSignals(ctx context.Context) bool {
	v, _ := ctx.Value(hostedKey{}).(bool)
	return v
}

type callersKey struct{}

// CallersStopped marks ctx for a hosted server whose host knows every caller
// that routes to it by discovery and stops them first: stopped closes once
// none of them can choose this server any more. Its wait after deregistering
// (Options.DeregisterDelay, for callers whose watch has not seen the
// deletion yet) then lasts until stopped is closed, at most the delay, so a
// host that has already stopped those callers pays nothing for it. Without
// the mark, as in every production binary, nothing can know that no caller
// still routes here, and the delay is waited out.
func CallersStopped(ctx context.Context, stopped <-chan struct{}) context.Context {
	return context.WithValue(ctx, callersKey{}, stopped)
}

// callersStopped is ctx's CallersStopped channel, or nil (never ready).
func callersStopped(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(callersKey{}).(<-chan struct{})
	return c
}
