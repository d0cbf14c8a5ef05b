package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// A row whose stored headers are not a JSON object of strings (written by hand, or damaged) can never be sent: no
// retry mends it. It was retried for ever, holding its key's later rows back, and a row whose headers were JSON null
// panicked the relay (propagation into a nil map). Such a row is now set aside as a row too large is: sent_at with
// its error, counted in outbox.messages.set_aside, kept by Cleanup; the rows behind it go out.
func TestRelaySetsAsideRowsWithUnreadableHeaders(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		topic := fmt.Sprintf("headers-%d", time.Now().UnixNano())
		bad := map[string]string{ // key -> the headers its first row is given
			"garbled": "{not json",
			"null":    "null",
			"number":  `{"ce_id":1}`,
		}
		var behind []string
		for key, headers := range bad {
			e := add(t, ctx, db, topic, key, 1)
			if err := db.Exec("UPDATE outbox SET headers = ? WHERE event_id = ?", headers, e.ID).Error; err != nil {
				t.Fatal(err)
			}
			behind = append(behind, add(t, ctx, db, topic, key, 2).ID)
		}
		w := &fakeWriter{}
		drain(t, outbox.NewRelay(db, w, outbox.RelayOptions{}))

		var got []string
		for _, m := range w.sent() {
			got = append(got, header(m, "ce_id"))
		}
		if len(got) != len(behind) {
			t.Fatalf("published %d rows, want the %d behind the unreadable ones", len(got), len(behind))
		}
		for _, m := range rows(t, db) {
			if bad[m.Key] != m.Headers {
				continue
			}
			if m.SentAt == nil || !strings.Contains(m.LastError, "set aside") || !strings.Contains(m.LastError, "headers") {
				t.Errorf("row of %s with headers %q: sent_at %v, last_error %q; want set aside naming its headers",
					m.Key, m.Headers, m.SentAt, m.LastError)
			}
		}
		if c := counts(t, topic); c["outbox.messages.set_aside"] != 3 || c["outbox.messages.failed"] != 0 {
			t.Fatalf("metrics %v, want 3 set aside and none failed", c)
		}
		if n, err := outbox.NewRelay(db, w, outbox.RelayOptions{}).Cleanup(ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
			t.Fatalf("cleanup deleted %d rows (%v), want the 3 published, the set-aside kept", n, err)
		}
	})
}
