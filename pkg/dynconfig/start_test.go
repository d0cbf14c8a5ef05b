package dynconfig

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// Watch fails when etcd gives no answer at start, as its doc says, instead
// of waiting as long as its ctx, which is the watch's whole lifetime (payment
// passes one that never ends): with ETCD_ENDPOINTS naming nothing that
// answers, a binary hung at start, silently, never listening. The etcd
// client dials lazily, so its DialTimeout does not bound the first read.
// Both a closed port and a listener that accepts and never answers are
// tried, as for the lease (pkg/server/discoverable).
func TestWatchFailsWhenEtcdDoesNotAnswerAtStart(t *testing.T) {
	for name, addr := range map[string]string{"closed port": testenv.ClosedPort(t), "silent listener": testenv.Hung(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cli.Close() })
			err = testenv.Within(t, StartTimeout+30*time.Second, "Watch with etcd at "+addr+" not answering", func() error {
				_, err := Watch(context.Background(), cli, "start-test", limits{})
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "no answer") {
				t.Fatalf("Watch with etcd at %s not answering = %v, want an error saying etcd did not answer", addr, err)
			}
		})
	}
}
