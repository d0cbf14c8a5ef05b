//go:build race

package telemetry

// raceEnabled: the race detector is on (allocation counts differ).
const raceEnabled = true
