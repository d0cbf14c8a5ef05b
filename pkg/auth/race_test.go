//go:build race

package auth

// raceEnabled: the race detector is on (allocation counts differ).
const raceEnabled = true
