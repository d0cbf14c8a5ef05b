package pulsarleg_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBCountsEveryBaggageValueAgainstTheTopicsMaxMessageSize: leg B archives several baggage headers as one
// property, their values joined (W3C Baggage), but its size check counted only a header's first value. A message
// whose later baggage values took it over the topic's max message size passed the check, the broker refused it, and
// the client does not report that (sizelimit.go): the session stalled, the message neither archived nor
// dead-lettered, nor anything after it.
func TestLegBCountsEveryBaggageValueAgainstTheTopicsMaxMessageSize(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const limit = 1500
	e.setMaxMessageSize(t, limit, "")
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	e.leg = pulsarleg.New(e.opts)
	// Seq 1's first baggage value is short, its second alone takes it over the limit; 0 and 2 fit.
	twoBaggages := func(h nats.Header) { h["baggage"] = []string{"a=1", "b=" + strings.Repeat("x", limit)} }
	for s := range 3 {
		var alter []func(nats.Header)
		if s == 1 {
			alter = append(alter, twoBaggages)
		}
		e.publishOn(t, e.route.PartitionSubject(0), s, 0, int64(s), kafkaleg.MsgID(e.route.Topic, 0, int64(s)), alter...)
	}
	stop := e.run(1)
	defer stop()
	if dead := e.accounted(t, 3, nil); !slices.Equal(dead, []int{1}) {
		t.Fatalf("dead letters %v: want seq 1 alone, over the limit with its baggage joined", dead)
	}
}
