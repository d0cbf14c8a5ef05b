package dedup

import "testing"

// SetCleanupBatch lowers Cleanup's batch for t, so a test shows batches with a few records.
func SetCleanupBatch(t *testing.T, n int) {
	old := cleanupBatch
	cleanupBatch = n
	t.Cleanup(func() { cleanupBatch = old })
}
