// Package mapping names where each Kafka topic goes: its JetStream subject and
// its Pulsar archive topic. The names are validated once at start so that a
// typo fails the deployment instead of silently publishing nowhere.
package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/stream"
)

// Route is one Kafka topic's destinations.
type Route struct {
	Topic       string // Kafka topic, e.g. shanhai.orders
	Subject     string // the topic's JetStream subject, e.g. shanhai.orders; partition p goes to PartitionSubject(p)
	PulsarTopic string // e.g. persistent://shanhai/events/shanhai.orders
}

// PartitionSubject is where leg A publishes partition p of the topic and what
// leg B's consumer for p filters on: shanhai.orders.p0 (pkg/stream).
func (r Route) PartitionSubject(p int) string { return stream.PartitionSubject(r.Subject, p) }

// Kafka allows [a-zA-Z0-9._-] up to 249 characters.
var kafkaTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// CheckTopic reports a name Kafka refuses as a topic: the bridge's own topics (the DLQ's) are checked at start, as
// a write to such a topic fails every time and holds the partition whose letter it is.
func CheckTopic(topic string) error {
	if !kafkaTopic.MatchString(topic) || topic == "." || topic == ".." {
		return fmt.Errorf("kafka topic %q: only [a-zA-Z0-9._-], 1-249 characters, and not \".\" or \"..\"", topic)
	}
	return nil
}

// Pulsar topic local names must not contain '/' or ':' and in practice stay
// within this set; tenant/namespace parts follow the same rule.
var pulsarName = regexp.MustCompile(`^[a-zA-Z0-9._=-]+$`)

// Routes builds one route per topic. spec is a comma list of Kafka topics,
// each optionally followed by "=subject" to publish somewhere other than the
// topic's own name (partition p then goes to subject.p<p>). streamSubjects
// are the stream's subject filters (the partition subjects must fall inside
// one, or JetStream would answer "no responders");
// namespace is the Pulsar tenant/namespace, e.g. "shanhai/events".
func Routes(spec string, streamSubjects []string, namespace string) ([]Route, error) {
	var errs []error
	ns := strings.Split(namespace, "/")
	if len(ns) != 2 || !pulsarName.MatchString(ns[0]) || !pulsarName.MatchString(ns[1]) {
		errs = append(errs, fmt.Errorf("pulsar namespace %q is not tenant/namespace", namespace))
	}
	for _, s := range streamSubjects {
		if err := checkSubject(s, true); err != nil {
			errs = append(errs, fmt.Errorf("stream subject %q: %w", s, err))
		}
	}
	var routes []Route
	seen := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		topic, subject, custom := strings.Cut(item, "=")
		if !custom {
			subject = topic
		}
		r := Route{Topic: topic, Subject: subject, PulsarTopic: "persistent://" + namespace + "/" + topic}
		if err := CheckTopic(topic); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[topic] {
			errs = append(errs, fmt.Errorf("kafka topic %q listed twice", topic))
			continue
		}
		seen[topic] = true
		if err := checkSubject(subject, false); err != nil {
			errs = append(errs, fmt.Errorf("subject %q for topic %q: %w", subject, topic, err))
		} else if ps := r.PartitionSubject(0); !covered(ps, streamSubjects) {
			errs = append(errs, fmt.Errorf("subject %q for topic %q is outside the stream's subjects %v", ps, topic, streamSubjects))
		} else {
			errs = append(errs, nested(r, routes)...)
		}
		routes = append(routes, r)
	}
	if len(routes) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no topics configured"))
	}
	return routes, errors.Join(errs...)
}

// nested reports r's subject equal to or under another route's, or another's under r's. A whole topic's consumers
// filter on stream.Filters(subject) (subject.> and subject), so they would be delivered the other topic's events too;
// with the same subject the topics would also share partition subjects, where leg B dead-letters the other topic's
// messages (reason metadata).
func nested(r Route, others []Route) []error {
	var errs []error
	for _, o := range others {
		switch {
		case o.Subject == r.Subject:
			errs = append(errs, fmt.Errorf("topics %q and %q have the same subject %q", o.Topic, r.Topic, r.Subject))
		case strings.HasPrefix(r.Subject, o.Subject+"."), strings.HasPrefix(o.Subject, r.Subject+"."):
			errs = append(errs, fmt.Errorf("subjects %q (topic %q) and %q (topic %q) nest: consumers of the shorter one's topic, filtering on its subject and everything under it, would receive the other topic's events; give one of them a subject of its own (topic=subject)",
				o.Subject, o.Topic, r.Subject, r.Topic))
		}
	}
	return errs
}

// checkSubject accepts dot-separated non-empty tokens without whitespace;
// wildcards only where a filter is expected.
func checkSubject(s string, filter bool) error {
	if s == "" {
		return errors.New("empty")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return errors.New("empty token")
		case strings.ContainsAny(t, " \t\r\n"):
			return errors.New("whitespace")
		case t == "*" || t == ">":
			if !filter {
				return errors.New("wildcard in a publish subject")
			}
			if t == ">" && i != len(toks)-1 {
				return errors.New("'>' not last")
			}
		case strings.ContainsAny(t, "*>"):
			return errors.New("wildcard inside a token")
		}
	}
	return nil
}

// covered reports whether subject matches one of the filters.
func covered(subject string, filters []string) bool {
	for _, f := range filters {
		if Match(f, subject) {
			return true
		}
	}
	return false
}

// Match reports whether a literal subject matches a NATS filter.
func Match(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// ByTopic indexes routes.
func ByTopic(routes []Route) map[string]Route {
	m := make(map[string]Route, len(routes))
	for _, r := range routes {
		m[r.Topic] = r
	}
	return m
}

// Name is a partition's stable name for things that must be unique per
// partition and free of dots: the JetStream consumer name.
func Name(topic string, partition int) string {
	r := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_")
	return fmt.Sprintf("bridge-%s-%d", r.Replace(topic), partition)
}

// ProducerName is a partition's Pulsar producer name, which Pulsar's broker
// keys its dedup state by: the highest sequence id (Kafka offset) it stored
// for that name. Offsets count from 0 again in another Kafka cluster (every
// embedded run's kfake, a Kafka that came back empty) and in a topic deleted
// and created again, so the name carries the cluster's id and the topic's
// (kafkaleg.TopicID, a UUID per incarnation of the topic): without them the
// broker dropped the new records as replays until their offsets passed the
// old ones. The same cluster and topic keep their ids across restarts, so a
// restarted bridge keeps its names and its replays are still dropped. The dot
// cannot occur in any part, so two names are equal only for the same
// partition, cluster and topic incarnation. An empty id (a broker too old to
// report one, or a record of a bridge from before the id) leaves its part out:
// trailing parts are dropped, and a topic id after no cluster id follows an
// empty part ("..").
func ProducerName(cluster, topicID, topic string, partition int) string {
	name := Name(topic, partition)
	switch {
	case topicID != "":
		return name + "." + ClusterToken(cluster) + "." + ClusterToken(topicID)
	case cluster != "":
		return name + "." + ClusterToken(cluster)
	}
	return name
}

// ClusterToken is a Kafka cluster id as ProducerName carries it: every character outside [A-Za-z0-9_-] becomes '_'.
// An id Kafka generates (a UUID in URL-safe base64) is its own token. Leg A stamps the token on each message
// (kafkaleg.HeaderCluster), as an id may hold what a NATS header value cannot (a line break); ProducerName gives the
// same name for the token as for the id, since the token is its own token.
func ClusterToken(cluster string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, cluster)
}
