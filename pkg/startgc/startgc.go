// Package startgc holds the garbage collector back while a service starts,
// and gives it back once the service has answered ready.
//
// Why: with the default GOGC the runtime's first heap goal is 4 MB, and a
// service's package initialisation alone allocates about 3 MB (kafka-go's
// protocol tables, gorm's inflection regexps, protobuf descriptors), its
// wiring a few MB more. So two collections used to run before /readyz
// answered 200 (gctrace: at about 12 and 20 ms after exec), each costing
// CPU for marking and write barriers on the path to readiness, and freeing
// little: almost everything allocated at start-up (tables, clients, pools)
// stays live. This package raises GOGC to [Percent] from its own package
// initialisation until [Ready], which restores it; the start-up garbage is
// then collected by the first cycle after readiness. It imports only what
// runtime/debug needs, so it is initialised as soon as the packages sorting
// before its import path allow (in the order service, after 1.3 of the 3 MB
// that package initialisation allocates: before the first cycle would start).
//
// The heap stays bounded while held back: Percent is a raised goal, not GC
// off, and [Deadline] restores the setting even if Ready is never called
// (a start that hangs on a dependency, a test binary).
//
// An explicit GOGC in the environment wins: the package then changes
// nothing, so an operator's setting is never overridden.
package startgc

import (
	"context"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
)

const (
	// Percent is GOGC while starting: a first heap goal of 4 MB × 4 = 16 MB,
	// above what a service allocates up to ready (about 8 MB).
	Percent = 400
	// Deadline restores GOGC if Ready has not by then.
	Deadline = 10 * time.Second
)

var (
	previous int
	held     atomic.Bool
)

func init() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	previous = debug.SetGCPercent(Percent)
	held.Store(true)
	time.AfterFunc(Deadline, Ready)
}

// Ready restores the GOGC the process started with. Call it once the
// service has answered ready (server.Options.OnReady); calls after the first
// do nothing.
func Ready() {
	if held.CompareAndSwap(true, false) {
		debug.SetGCPercent(previous)
	}
}

// Held reports whether the collector is still held back.
func Held() bool { return held.Load() }

// Linger is how long the collector stays held after the last start-up step
// has succeeded, when nothing calls Ready sooner.
//
// Why not at once: the steps' end is when /readyz turns 200, and the
// collection that Ready lets begin (the heap is past the default goal by
// then) ran beside the first ready answer, its mark phase competing with
// the readiness checks for the CPU: 2.3 ms of mark CPU per order start
// before its first 200 (perf over 20 starts, 2026-12-06). A service passes
// Ready as its server's OnReady, so the hold ends as soon as that answer is
// sent; Linger bounds the hold when no probe comes soon, and the collector's
// first cycle then runs when the service is most likely idle.
const Linger = time.Second

// Steps wraps a service's start-up steps (see server.ServeStarting) so that
// Ready runs Linger after the last of them has succeeded, i.e. after /readyz
// turned 200, unless something (the server's OnReady) calls it sooner. A
// failed step leaves the collector held: the process is shutting down, and
// Deadline restores it anyway.
func Steps(steps ...func(context.Context) error) []func(context.Context) error {
	var left atomic.Int32
	left.Store(int32(len(steps)))
	out := make([]func(context.Context) error, len(steps))
	for i, step := range steps {
		out[i] = func(ctx context.Context) error {
			if err := step(ctx); err != nil {
				return err
			}
			if left.Add(-1) == 0 {
				time.AfterFunc(Linger, Ready)
			}
			return nil
		}
	}
	return out
}
