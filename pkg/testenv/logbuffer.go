package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a server or a child process writes (its log) while
// the test reads it: unlike a bytes.Buffer, Write and String may be called
// from different goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
