package pulsarleg_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBSessionAfterAReadingArchivesWhileTheAdminAPIHangs: a running session keeps its last reading of the topic's
// max message size while the admin API hangs, but a session that started then (the partition revoked and assigned
// back to the same instance by a rebalance, or restarted after a JetStream or NATS error) waited for a reading of its
// own, archiving nothing for as long as the API hung, though the leg held a reading as recent as the running
// sessions'. It now starts under the leg's last reading of the topic and archives at once.
func TestLegBSessionAfterAReadingArchivesWhileTheAdminAPIHangs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	target, err := url.Parse(e.admin)
	if err != nil {
		t.Fatal(err)
	}
	var hung atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hung.Load() {
			<-r.Context().Done() // accepts, never answers: the client gives up
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer admin.Close()
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(admin.URL, &http.Client{Timeout: 2 * time.Second})
	e.leg = pulsarleg.New(e.opts)

	const n = 5
	for i := range n {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	stop := e.run(1)
	recs := e.read(t, n, 30*time.Second)
	hung.Store(true)
	stop() // the partition is revoked

	for i := n; i < 2*n; i++ {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	start := time.Now()
	stop = e.run(1) // and assigned back while the admin API hangs
	defer stop()
	// Within the hung first reading's 2 s and the archiving, far less than an API that never answers again.
	recs = append(recs, e.read(t, n, 15*time.Second)...)
	t.Logf("%d of %d archived, the second session's %v after it started", len(recs), 2*n, time.Since(start).Round(time.Millisecond))
	if v := harness.Judge(2*n, recs); !v.OK() {
		t.Fatalf("archive while the admin API hangs after a reading: %v", v)
	}
}
