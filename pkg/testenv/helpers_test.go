package testenv_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// randomWord keeps names of streams, topics and keys apart between runs and between tests sharing a server.
func randomWord(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
