package pulsarleg

import (
	"testing"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// Leg A dead-letters a record that brings a header of a name leg B writes as a Pulsar property (kafkaleg.Reserved):
// carried, leg B would replace the producer's value with its own. kafkaleg cannot import these names, so this keeps
// its list and leg B's properties together.
func TestLegAReservesLegBsPropertyNames(t *testing.T) {
	for _, name := range []string{PropTopic, PropPartition, PropOffset} {
		if !kafkaleg.Reserved(name) {
			t.Errorf("kafkaleg.Reserved(%q) = false: a record header of that name would reach leg B and be replaced", name)
		}
	}
}
