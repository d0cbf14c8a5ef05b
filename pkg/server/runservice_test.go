package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

type runnerFunc func(context.Context) error

func (f runnerFunc) Run(ctx context.Context) error { return f(ctx) }

// TestRunServiceLogsItsStagesAndWhyItStopped: the service is built with the
// part's logger and a telemetry provider, then run; the two timeline lines
// come first, and an error from the wiring or from Run is returned and
// logged once as "<name> service stopped", a clean stop not at all.
func TestRunServiceLogsItsStagesAndWhyItStopped(t *testing.T) {
	failed := errors.New("boom")
	for _, tc := range []struct {
		name     string
		newErr   error
		runErr   error
		wantLogs []string
	}{
		{"clean stop", nil, nil, []string{"configuration loaded", "telemetry set up", "ran"}},
		{"wiring fails", failed, nil, []string{"configuration loaded", "telemetry set up", "demo service stopped"}},
		{"run fails", nil, failed, []string{"configuration loaded", "telemetry set up", "ran", "demo service stopped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf strings.Builder
			given := telemetry.NewLogger(&buf, slog.LevelDebug)
			err := Part{Logger: given}.RunService(t.Context(), Wiring{
				Name: "demo", Version: "v1", LogLevel: slog.LevelError,
				New: func(_ context.Context, log *slog.Logger, tp *telemetry.Provider) (Runner, error) {
					if log != given || tp == nil {
						t.Errorf("New got logger %p (want the part's %p) and provider %v", log, given, tp)
					}
					if tc.newErr != nil {
						return nil, tc.newErr
					}
					return runnerFunc(func(context.Context) error { log.Info("ran"); return tc.runErr }), nil
				},
			})
			if want := errors.Join(tc.newErr, tc.runErr); want == nil && err != nil || want != nil && !errors.Is(err, failed) {
				t.Fatalf("RunService = %v, want %v", err, want)
			}
			var msgs []string
			sc := bufio.NewScanner(strings.NewReader(buf.String()))
			for sc.Scan() {
				var rec struct {
					Msg, Level, Err, Logger string
				}
				if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
					t.Fatalf("log line %q: %v", sc.Text(), err)
				}
				if rec.Logger == "opentelemetry" {
					continue // the SDK's own lines (a provider made), at debug like the part's logger
				}
				msgs = append(msgs, rec.Msg)
				if rec.Msg == "demo service stopped" && (rec.Level != "ERROR" || rec.Err != "boom") {
					t.Errorf("stop line at %s with err %q, want ERROR with the cause", rec.Level, rec.Err)
				}
			}
			if !slices.Equal(msgs, tc.wantLogs) {
				t.Errorf("logged %q, want %q", msgs, tc.wantLogs)
			}
		})
	}
}
