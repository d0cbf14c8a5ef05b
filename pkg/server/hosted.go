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
