package outbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// Environment of the crashing relay process started by TestOutboxResendsAfterCrash.
const (
	crashEnvDB      = "OUTBOX_CRASH_DATABASE_URL"
	crashEnvBrokers = "OUTBOX_CRASH_KAFKA_BROKERS"
	crashExitCode   = 42
)

// crashRelayOptions give the crashing relay a short lease, so the test sees its PostgreSQL rows wait it out and then
// go out again without waiting the default's 25 s.
var crashRelayOptions = outbox.RelayOptions{PublishTimeout: 5 * time.Second, Lease: 6 * time.Second}

// helperMain turns the test binary into a relay process that dies right after Kafka acknowledged its publish and before
// the transaction that marks the rows sent commits: the real crash the outbox must survive (no deferred rollback, no
// graceful close; the database sees a dropped connection). It returns false in a normal test run.
func helperMain() bool {
	url := os.Getenv(crashEnvDB)
	if url == "" {
		return false
	}
	db, err := database.Open(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		os.Exit(1)
	}
	kw := outbox.NewWriter(strings.Split(os.Getenv(crashEnvBrokers), ",")...)
	w := writerFunc(func(ctx context.Context, msgs ...kafka.Message) error {
		if err := kw.WriteMessages(ctx, msgs...); err != nil {
			fmt.Fprintln(os.Stderr, "crash helper publish:", err)
			os.Exit(1)
		}
		os.Exit(crashExitCode)
		return nil
	})
	_, err = outbox.NewRelay(db, w, crashRelayOptions).RunOnce(context.Background())
	fmt.Fprintln(os.Stderr, "crash helper: relay returned without publishing:", err)
	os.Exit(1)
	return true
}
