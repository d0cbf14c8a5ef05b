package main

import "testing"

// TestPriceTCPRefusesBadFlags: -tcp flags that cannot give a figure are refused before anything is loaded or dialled.
// Before, -rounds 0 panicked on the empty medians (nil pointer), -dials 0 printed +Inf ns a dial, and a -tcp without
// name= failed only when its round came.
func TestPriceTCPRefusesBadFlags(t *testing.T) {
	obj := "now=../../probe/tcp/bpf_x86_bpfel.o"
	for _, c := range []struct {
		name          string
		objs          []string
		rounds, dials int
	}{
		{"no rounds", []string{obj}, 0, 10},
		{"no dials", []string{obj}, 1, 0},
		{"no name", []string{"../../probe/tcp/bpf_x86_bpfel.o"}, 1, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := priceTCP(c.objs, c.rounds, c.dials); err == nil {
				t.Errorf("priceTCP(%q, %d rounds, %d dials): no error", c.objs, c.rounds, c.dials)
			}
		})
	}
}
