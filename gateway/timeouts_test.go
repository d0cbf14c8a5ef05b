package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/config"
)

// A dynamic document's route timeouts above GATEWAY_MAX_TIMEOUT are named
// in one WARN when it is applied, sorted, with the cap; one at the cap or
// below is not a cut and says nothing.
func TestWarnCutTimeoutsNamesTheRoutesAboveTheCap(t *testing.T) {
	const max = 2 * time.Second
	for _, tc := range []struct {
		name     string
		timeouts map[string]config.Duration
		want     []string // the routes named; nil: no line
	}{
		{"none", nil, nil},
		{"at the cap", map[string]config.Duration{"orders": config.Duration(max)}, nil},
		{"above", map[string]config.Duration{"users": config.Duration(time.Hour), "orders": config.Duration(max + time.Millisecond),
			"products": config.Duration(time.Second)}, []string{"orders", "users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnCutTimeouts(slog.New(slog.NewJSONHandler(&buf, nil)), config.Dynamic{Timeouts: tc.timeouts}, max)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if tc.want == nil {
				if buf.Len() != 0 {
					t.Fatalf("logged %q, want nothing", buf.String())
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want one: %q", len(lines), buf.String())
			}
			var rec struct {
				Level, Msg, Max string
				Routes          []string
			}
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Level != "WARN" || !strings.Contains(rec.Msg, "GATEWAY_MAX_TIMEOUT") || rec.Max != "2s" || !slices.Equal(rec.Routes, tc.want) {
				t.Fatalf("logged %+v, want a WARN naming GATEWAY_MAX_TIMEOUT, max 2s and routes %v", rec, tc.want)
			}
		})
	}
}
