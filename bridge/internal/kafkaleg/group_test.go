package kafkaleg_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// otherProtocol is a partition assignment protocol leg A does not speak (kafka-go's ConsumerGroup offers range and
// round robin): while a member holding the group offers only it, the coordinator refuses leg A's join
// (INCONSISTENT_GROUP_PROTOCOL), and leg A never gets a generation.
type otherProtocol struct{}

func (otherProtocol) ProtocolName() string      { return "shanhai-test-other" }
func (otherProtocol) UserData() ([]byte, error) { return nil, nil }
func (otherProtocol) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	for _, m := range members[:1] {
		out[m.ID] = map[string][]int{}
		for _, p := range partitions {
			out[m.ID][p.Topic] = append(out[m.ID][p.Topic], p.ID)
		}
	}
	return out
}

// TestLegAIsNotReadyWithoutAGroupGeneration: readiness was a TCP dial to a broker, so a leg whose consumer group never
// got a generation carried nothing, logged a warning every second and said ready. Ready must fail, saying why, while
// the group refuses the leg, with the refusal logged once rather than at each attempt; it must pass once the leg
// joins, and stay passing through a normal rebalance (a second instance joining).
func TestLegAIsNotReadyWithoutAGroupGeneration(t *testing.T) {
	t.Parallel()
	e := setup(t, 2)
	logs := &testenv.LogBuffer{}
	e.log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	group := "bridgetest-" + harness.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	holder, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: e.brokers, Topics: []string{e.topic}, GroupBalancers: []kafka.GroupBalancer{otherProtocol{}},
		SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second, HeartbeatInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	for { // Next reports each failed join (a coordinator not available yet) and goes on trying
		if _, err := holder.Next(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the other protocol's member got no generation: %v", err)
		}
	}

	l := running(t, e, group)
	waitFor(t, "a failed join logged", func() bool { return strings.Contains(logs.String(), "no generation yet") })
	// Not synchronisation: the span in which the group refuses the leg's joins again (every JoinGroupBackoff, a
	// second), which the old leg logged each time.
	time.Sleep(5 * time.Second)
	if l.Generations() != 0 {
		t.Fatalf("the leg got a generation while a member with another protocol holds the group")
	}
	err = l.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), group) {
		t.Errorf("Ready without a generation = %v, want an error naming the group %s", err, group)
	} else {
		t.Logf("not ready: %v", err)
	}
	if n := strings.Count(logs.String(), "no generation yet"); n != 1 {
		t.Errorf("a refused join logged %d times in 5 s, want once: %s", n, logs.String())
	}

	holder.Close() // the group is free: the leg joins
	waitFor(t, "a generation once the group is free", func() bool { return l.Generations() > 0 })
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("Ready in a generation: %v", err)
	}

	// A second instance joining rebalances the group: the first leaves its generation and joins the next, and is
	// ready throughout.
	l2 := running(t, e, group)
	for l2.Generations() == 0 || l.Generations() < 2 {
		if err := l.Ready(ctx); err != nil {
			t.Fatalf("Ready during a rebalance: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("no rebalance within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A third instance for two partitions: the generation assigns one member none. It is a member all the same, and
	// must be ready, or a deployment scaled past the partition count would never finish rolling out.
	l3 := running(t, e, group)
	waitFor(t, "a generation of three members", func() bool {
		return l3.Generations() > 0 && l2.Generations() >= 2 && l.Generations() >= 3
	})
	// Not synchronisation: readiness passes for two session timeouts (12 s here) after a generation ends, so only a
	// member still ready past them is in one.
	for end := time.Now().Add(13 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		for i, leg := range []*kafkaleg.Leg{l, l2, l3} {
			if err := leg.Ready(ctx); err != nil {
				t.Fatalf("instance %d of three on two partitions not ready: %v", i+1, err)
			}
		}
	}
}

// running is a leg of group, started, and stopped when the test ends.
func running(t *testing.T, e *env, group string) *kafkaleg.Leg {
	t.Helper()
	l := e.leg(t, group, 1<<20)
	stop := start(l)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// waitFor polls cond until it holds, failing t after a minute (a bound for a stuck test, not a timing goal).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
