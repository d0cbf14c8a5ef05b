package pulsarleg_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestCloseClientIsBounded: at the bridge's exit the Pulsar client's Close waits for a producer's Close that leg B
// abandoned against a broker that does not answer (the client closes a producer once, and a second Close waits for the
// first), up to the client's operation timeout. The stand-in's Close never returns: CloseClient must.
func TestCloseClientIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	c := hungClient(release)
	if err := testenv.Within(t, 5*time.Second, "closing a Pulsar client whose Close never returns", func() error {
		pulsarleg.CloseClient(c, 100*time.Millisecond, slog.New(slog.DiscardHandler))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// hungClient's Close waits until release, as the client's does for a producer's Close the broker never answers.
type hungClient chan struct{}

func (c hungClient) Close() { <-c }
