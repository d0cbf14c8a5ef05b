package server

import (
	"errors"
	"reflect"
	"testing"
)

func TestCleanupClosesInReverseAndKeepsGoing(t *testing.T) {
	var c Cleanup
	var order []string
	boom := errors.New("boom")
	c.Add(func() error { order = append(order, "db"); return nil })
	c.Add(func() error { order = append(order, "nats"); return boom })
	c.Add(func() error { order = append(order, "kafka"); return nil })

	if err := c.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close() = %v, want the failing closer's error", err)
	}
	if want := []string{"kafka", "nats", "db"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("closed %v, want %v (last opened first, past a failure)", order, want)
	}
	if err := c.Close(); err != nil || len(order) != 3 {
		t.Fatalf("second Close ran closers again (err %v, %d calls)", err, len(order))
	}
}
