package stream

import (
	"context"
	"testing"
)

func TestDrainWithinWaitsForTheHandlers(t *testing.T) {
	cut := false
	DrainWithin(context.Background(), func() {}, func() { cut = true })
	if cut {
		t.Fatal("handlers were cut off although they finished before the deadline")
	}
}

func TestDrainWithinCutsOffWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cutOff := make(chan struct{})
	handling := make(chan struct{})
	go func() { <-handling; cancel() }() // the stop's deadline passes while a handler is stuck
	returned := false
	DrainWithin(ctx, func() {
		close(handling)
		<-cutOff // a handler that ends only when its context is cancelled
		returned = true
	}, func() { close(cutOff) })
	if !returned {
		t.Fatal("DrainWithin returned before drain did")
	}
}
