//go:build !race

package proxy

// raceEnabled: the race detector is on (it adds allocations of its own).
const raceEnabled = false
