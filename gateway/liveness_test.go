package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLivenessAnswersWhatTheLoopsSay: 200 "ok" while every loop runs, 503
// naming the error once one does not; never cached.
func TestLivenessAnswersWhatTheLoopsSay(t *testing.T) {
	stuck := errors.New("1 of 2 event loops did not run a task")
	for _, tc := range []struct {
		err    error
		status int
		body   string
	}{{nil, 200, "ok"}, {stuck, 503, stuck.Error()}} {
		h := liveness(func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("alive was asked without a deadline")
			}
			return tc.err
		}, slog.New(slog.DiscardHandler))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != tc.status || string(body) != tc.body || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("alive %v: %d %q %q, want %d %q no-store", tc.err, rec.Code, body, rec.Header().Get("Cache-Control"), tc.status, tc.body)
		}
	}
}
