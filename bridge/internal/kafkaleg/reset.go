package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// A position outside the partition's offsets is one Kafka answers OFFSET_OUT_OF_RANGE to: past the end when the
// topic was deleted and created again (offsets from 0) or truncated under the committed offset, before the start
// when retention removed records the bridge had not carried. kafka-go's reader moves a position before the start to
// the first offset by itself, saying nothing, and retries one past the end for ever: the partition carried nothing,
// and once the new topic's records reached the old position it carried from there, skipping every record below it.
// Leg A does what Kafka's own consumers do with auto.offset.reset=earliest: each session checks its position first
// and starts from the partition's earliest offset when it lies outside (never past a record that exists), logs that
// with both offsets, counts it in bridge_offset_resets_total, and the committer leaves the new position uncommitted
// until records past it are carried. A reader that meets the error later (the topic recreated during the session)
// ends the session, so that the next one checks (outOfRange).
//
// A topic recreated and refilled past the old position before the check looks in range. Its id tells (TopicID): a
// reader that meets the deleted topic (UNKNOWN_TOPIC_OR_PARTITION) ends the session, and a session that reads
// another id than the generation's last session read resets the position to the new incarnation's earliest offset
// (recreated). Before, the reader went on at the old position in the new topic, skipping every record below it.

// rewind is a reset of the partition's position to offset to, which the committer does not commit (commit): only a
// position past it, which records carried moved it to. Positions only rise between resets, so the position equals to
// until then, in the session the reset started and in those that follow it after a failure.
//
// tracked is set once the session the reset started has stored its tracker (partition.track): until then the
// tracker is the session's before, whose position is not of this reset.
type rewind struct {
	to      int64
	tracked atomic.Bool
}

// resumeAt returns where to read a partition whose offsets run from first to end (the next offset to be written)
// when its position is pos, and on which side pos lay if it was outside ("" if inside).
func resumeAt(pos, first, end int64) (int64, string) {
	switch {
	case pos > end:
		return first, metrics.PastEnd
	case pos < first:
		return first, metrics.BeforeStart
	}
	return pos, ""
}

// checkTimeout bounds a session's position check (inRange), 10 s as when the check had a client of its own: the
// session waits for it, where refreshLag, bounded by the commit interval, just asks again at the next one.
const checkTimeout = 10 * time.Second

// inRange returns the position the session starting at pos reads from, and whether it was reset: pos, or the
// partition's earliest offset when pos lies outside its offsets. One ListOffsets request per session; when it fails, the failure is counted as
// a failed fetch and the session reads from pos: its reader reports a position out of range as an error
// (OffsetOutOfRangeError), which ends the session and so brings the next check.
func (p *partition) inRange(ctx context.Context, pos int64) (int64, bool) {
	first, end, err := p.offsetRange(ctx)
	if err != nil {
		return pos, false
	}
	to, side := resumeAt(pos, first, end)
	if side == metrics.PastEnd {
		p.forgetVerdicts()
	}
	if side != "" {
		p.leg.reportReset(p.route.Topic, p.id, side, pos, to, first, end)
	}
	return to, side != ""
}

// offsetRange asks the partition's leader for its first and end offsets (one ListOffsets request, bounded by
// checkTimeout), counting a failure as a failed fetch. The end is also the high watermark refreshLag reports from:
// after a reset within a generation (the topic recreated or truncated) the one the last fetched record came with is
// the old partition's, and refreshLag would report it minus the reset position while the session waits for a record.
func (p *partition) offsetRange(ctx context.Context) (first, end int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	res, err := p.leg.offsets.ListOffsets(rctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		p.route.Topic: {kafka.FirstOffsetOf(p.id), kafka.LastOffsetOf(p.id)},
	}})
	if err == nil {
		err = fmt.Errorf("no answer for partition %d", p.id)
		for _, po := range res.Topics[p.route.Topic] {
			if po.Partition == p.id {
				first, end, err = po.FirstOffset, po.LastOffset, po.Error
				break
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("list offsets of %s partition %d: %w", p.route.Topic, p.id, err)
		p.askFailed(ctx, err)
		return -1, -1, err
	}
	p.hwm.Store(end)
	return first, end, nil
}

// forgetVerdicts drops the sink's verdicts on the partition's offsets once they name other records (a recreated topic's;
// a truncated one's above its end): the verdicts on the old ones must not decide theirs. A dead-lettered offset whose
// commit had not gone through (the topic was being deleted) skipped the new record at it, carried nowhere. Forgetting
// a verdict on a record that is still there (below a truncated end) costs at most a second letter.
func (p *partition) forgetVerdicts() {
	p.mu.Lock()
	clear(p.rejects)
	p.mu.Unlock()
}

// recreated returns where a session reads from when its topic id (topicID) is not the one the generation's last
// session read, in which pos is a position: the topic was deleted and created again since, and pos names none of the
// new incarnation's records. When the new topic was refilled past pos before this session's check, the check finds
// pos in range, and reading from it skipped every record below it. So it reads from the partition's earliest offset,
// as a reset (logged, counted with side recreated, committed only once records past it are carried).
//
// The earliest offset is asked again here, once the new id is known, not taken from the session's check: the check
// runs before the id is read, and a topic deleted and created again between the two gave the old incarnation's first
// offset, so the reset went there (or nowhere, when that was the position) and skipped the new records below it. When
// the request fails, so does the session: the next one checks again.
func (p *partition) recreated(ctx context.Context, pos int64, topicID string) (int64, error) {
	first, end, err := p.offsetRange(ctx)
	if err != nil {
		return pos, fmt.Errorf("topic %s partition %d created again (id %s, was %s): %w", p.route.Topic, p.id, topicID, p.topicID, err)
	}
	p.forgetVerdicts()
	if first != pos { // the check may have reset pos to first already (past the new end): one reset, counted once
		p.leg.reportReset(p.route.Topic, p.id, metrics.Recreated, pos, first, first, end)
	}
	return first, nil
}

// topicGone reports whether the arguments of a kafka-go reader's error log line hold UNKNOWN_TOPIC_OR_PARTITION: the
// partition's broker no longer knows the topic (deleted; or its metadata is behind).
func topicGone(args []any) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, kafka.UnknownTopicOrPartition) {
			return true
		}
	}
	return false
}

// kafka-go reports a position out of range that its reader meets while reading (not at its start, where
// OffsetOutOfRangeError makes it an error) to its error logger alone, with these messages: one past the end it
// retries for ever, one before the start it moves to the first offset. NewPartitionReader wraps them in
// kafka.OffsetOutOfRange so that the session ends and the next one's check resets and counts the position.
var outOfRangeLogs = []string{
	"the kafka reader is reading passed the last offset",
	"the kafka reader is reading before the first offset",
}

func outOfRangeLog(msg string) bool {
	for _, prefix := range outOfRangeLogs {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// resetsSeen remembers, per partition, the position leg A last found outside it. The reset position is committed only
// once records past it are carried, so until then every generation (each rebalance) finds the old committed offset
// outside again and resets it again: one event, which counted each time made bridge_offset_resets_total over-count and
// the critical BridgeOffsetReset alert fire again. A partition's from-offset changes only with a new event (its
// position moved by carried records, then found outside again), so the last one per partition is all it needs to keep,
// and the map is bounded by the partitions the process ever owned. What it cannot tell: the same topic recreated
// twice before anything was carried resets from the same offset both times, and the second counts as the first's
// repeat; a restarted process starts with none seen and counts the pending reset once more.
type resetsSeen struct {
	mu   sync.Mutex
	from map[partKey]int64
}

type partKey struct {
	topic     string
	partition int
}

// first reports whether a reset of the partition from offset from is new to the process, and remembers it.
func (r *resetsSeen) first(topic string, partition int, from int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := partKey{topic, partition}
	if f, ok := r.from[k]; ok && f == from {
		return false
	}
	if r.from == nil {
		r.from = make(map[partKey]int64)
	}
	r.from[k] = from
	return true
}

// reportReset counts and logs at WARN a position from outside the partition (offsets first to end) reset to offset
// to, once per distinct (topic, partition, from) in the process (resetsSeen); a repeat is logged at INFO.
func (l *Leg) reportReset(topic string, partition int, side string, from, to, first, end int64) {
	attrs := []any{"topic", topic, "partition", partition, "side", side, "from", from, "to", to, "first", first, "end", end}
	if !l.resets.first(topic, partition, from) {
		l.o.Logger.Info("leg A position outside the partition again: its reset is not committed yet", attrs...)
		return
	}
	l.o.Metrics.OffsetReset(topic, partition, side)
	l.o.Logger.Warn("leg A position outside the partition: reading from its earliest offset", attrs...)
}
