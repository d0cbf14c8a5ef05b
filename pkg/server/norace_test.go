//go:build !race

package server

// raceEnabled: the race detector is on (allocation counts differ).
const raceEnabled = false
