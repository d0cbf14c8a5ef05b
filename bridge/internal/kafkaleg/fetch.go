package kafkaleg

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/outage"
)

// A partition the generation assigned whose fetches fail (its leader away, the broker refusing it) used to show only
// as a rising bridge_consumer_lag: kafka-go's reader retries such errors by itself and reports most of them to its
// error logger alone, which leg A left at nil. Each failed fetch is now counted as bridge_fetch_errors_total{topic,
// partition}, the run of them is logged by its changes (outage.Log), and a partition failing for longer than a
// rebalance may take fails readiness, naming it.

// fetchQuiet is how long a partition that failed to fetch must go without another failure to count as fetching
// again when no record arrives (an idle partition has none to show it). A failing reader reports an error at least
// every ReadBackoffMax (1 s) plus a dial (up to 10 s) or a held fetch (FetchMaxWait), so three FetchMaxWaits of
// silence mean its fetches succeed.
const fetchQuiet = 3 * FetchMaxWait

func newFetchLog(log *slog.Logger, topic string, partition int) *outage.Log {
	return &outage.Log{
		Logger: log, Level: slog.LevelWarn, Repeat: time.Minute, Attrs: []any{"topic", topic, "partition", partition},
		Failing: "leg A cannot fetch the partition; kafka-go retries", Ended: "leg A fetches the partition again",
	}
}

// fetchFailed records a failed fetch of the partition. A position out of range is no failure of the partition: it
// ends the session, and the next one resets and counts the position (reset.go). A partition the broker does not know
// (the topic deleted) is one, and ends the session too: the next one reads the topic's id before it fetches again
// (recreated).
func (p *partition) fetchFailed(err error) {
	if errors.Is(err, kafka.OffsetOutOfRange) {
		if s := p.session.Load(); s != nil {
			s.outOfRange(err)
		}
		return
	}
	p.leg.o.Metrics.FetchError(p.route.Topic, p.id)
	p.fetch.Fail(err)
	if s := p.session.Load(); s != nil && errors.Is(err, kafka.UnknownTopicOrPartition) {
		s.outOfRange(err)
	}
}

// fetchSettled ends the partition's run of fetch failures once none came for fetchQuiet.
func (p *partition) fetchSettled(now time.Time) {
	if f := p.fetch.Current(); f.Attempts > 0 && now.Sub(f.Last) >= fetchQuiet {
		p.fetch.OKAt(now)
	}
}

// refreshFetch ends the runs of fetch failures that went quiet (fetchSettled) and sets each partition's
// bridge_partition_unfetchable from the readiness rule (unfetchable), so that the alert means what readiness means: a
// partition failing continuously for a rebalance's span, not a sporadic failure every few minutes (each one is a run
// of its own, settled after fetchQuiet).
func (l *Leg) refreshFetch(parts []*partition, now time.Time) {
	for _, p := range parts {
		p.fetchSettled(now)
		l.o.Metrics.Unfetchable(p.route.Topic, p.id, unfetchable(p.fetch.Current(), l.fetchGrace()))
	}
}

// unfetchable reports whether a partition's run of failed fetches f spans grace or more (the first to the latest):
// readiness fails on it and bridge_partition_unfetchable shows it.
func unfetchable(f outage.Failure, grace time.Duration) bool {
	return f.Attempts > 0 && f.Last.Sub(f.Since) >= grace
}

// unfetched is the error readiness reports for the generation's partitions whose failed fetches span grace or more
// (the first to the latest): a partition that failed once and then went quiet is not held against readiness while
// fetchQuiet runs out; nil if none.
func unfetched(parts []*partition, grace time.Duration, now time.Time) error {
	var failing []string
	for _, p := range parts {
		if f := p.fetch.Current(); unfetchable(f, grace) {
			failing = append(failing, fmt.Sprintf("%s partition %d for %s (%d attempts: %v)",
				p.route.Topic, p.id, now.Sub(f.Since).Round(time.Second), f.Attempts, f.Err))
		}
	}
	if len(failing) == 0 {
		return nil
	}
	return fmt.Errorf("leg A cannot fetch %s", strings.Join(failing, "; "))
}
