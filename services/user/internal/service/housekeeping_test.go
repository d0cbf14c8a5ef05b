package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/user/internal/service"
)

// Started, the service deletes the refresh tokens that have expired (nothing
// else ever did, so the table grew with every login) and keeps the live ones.
func TestStartDeletesExpiredRefreshTokens(t *testing.T) {
	h := newHarness(t, map[string]string{"KAFKA_BROKERS": strings.Join(testenv.Kafka(t), ",")})
	email := uniqEmail()
	id := h.register(email)["id"].(string)
	h.tokens(email) // a live token
	past := time.Now().Add(-time.Hour).UTC()
	if err := h.svc.DB.Exec(`INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at)
		VALUES ('expired-'||?, 'expired-'||?, ?, 'expired-'||?, ?, ?)`, id, id, id, id, past.Add(-time.Hour), past).Error; err != nil {
		t.Fatal(err)
	}
	count := func(where string) (n int64) {
		if err := h.svc.DB.Table("refresh_tokens").Where("user_id = ? AND "+where, id).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	service.SetFirstHousekeeping(h.svc, 0)
	if err := h.svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the deletion logged", func() bool {
		return strings.Contains(h.logs.String(), `"msg":"deleted expired refresh tokens","count":1`)
	})
	if expired, live := count("expires_at < CURRENT_TIMESTAMP"), count("expires_at > CURRENT_TIMESTAMP"); expired != 0 || live != 1 {
		t.Fatalf("%d expired and %d live tokens left, want 0 and 1", expired, live)
	}
}
