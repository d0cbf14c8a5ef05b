package stream

import "strconv"

// The bridge publishes each Kafka partition of a topic to a subject of its
// own, <topic's subject>.p<partition> (shanhai.orders.p0, shanhai.orders.p1,
// ...), rather than one subject per topic. Its archive leg reads each
// partition through a JetStream consumer of its own; with one subject per
// topic every one of those consumers was delivered every partition's messages
// and threw the others' away (three reads per message with three partitions)
// from the same fsync-bound server that takes the writes. With a subject per
// partition each message is read once by the archive, and a consumer of the
// whole topic filters on Filters(subject).

// PartitionSubject is the subject that carries one Kafka partition of the
// topic whose events go to subject: ("shanhai.orders", 2) is
// "shanhai.orders.p2". The "p" keeps the token from reading as a sequence.
func PartitionSubject(subject string, partition int) string {
	return subject + ".p" + strconv.Itoa(partition)
}

// Filters are the filter subjects of a consumer that wants every event of the
// topic whose events go to subject: its partitions (subject.>) and subject
// itself, which carried the whole topic before the bridge published per
// partition.
//
// Keeping the old subject is what makes the upgrade lossless. A durable
// consumer updated in place (CreateOrUpdateConsumer) from the old single
// filter keeps its position; events stored on the old subject after that
// position are still delivered, in stream order, before the new ones. With
// only subject.> they would be skipped for good. Nothing publishes to the old
// subject any more, so once those are consumed the extra filter costs nothing.
// The two filters never overlap (subject.> needs one more token), which
// JetStream requires.
func Filters(subject string) []string {
	return []string{subject + ".>", subject}
}
