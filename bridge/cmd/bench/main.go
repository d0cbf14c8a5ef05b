// Command bench measures the bridge on this machine against the servers of
// scripts/deps.sh (run it through bridge/bench/run.sh):
//
//   - drain: N preloaded messages of -size bytes, Kafka -> JetStream -> Pulsar,
//     msgs/s and MB/s, from bridge start to the last Pulsar confirmation;
//   - latency: fixed producer rates, end-to-end p50/p99/p99.9 from the Kafka
//     produce call to receipt from Pulsar;
//   - ceilings: each hop alone with the same client library and guarantees
//     (Kafka consume + commit, JetStream async publish with Nats-Msg-Id,
//     Pulsar dedup producers with batching off); goal: drain >= 0.8x slowest;
//   - peer: leg A alone against a Watermill forwarder (watermill-kafka
//     subscriber -> watermill-nats JetStream publisher, pinned in go.mod);
//     goal: >= 1.5x its throughput.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/stream"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

var (
	n        = flag.Int("n", 200000, "preloaded messages")
	size     = flag.Int("size", 1024, "payload bytes")
	rates    = flag.String("rates", "", "fixed producer rates for the latency phase, comma list (default: 25%,50%,75% of the drain rate)")
	rateDur  = flag.Duration("rate-duration", 15*time.Second, "how long each fixed rate runs")
	phases   = flag.String("phases", "drain,latency,ceilings,lega,watermill", "phases to run")
	cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the drain phase (bridge in this process) to this file")
	brokers  = strings.Split(env("KAFKA_BROKERS", "127.0.0.1:19092"), ",")
	natsURL  = env("NATS_URL", "nats://127.0.0.1:14222")
	pulsarU  = env("PULSAR_URL", "pulsar://127.0.0.1:16650")
	adminURL = env("PULSAR_ADMIN_URL", "http://127.0.0.1:18080")
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	flag.Parse()
	ctx := context.Background()
	id := harness.ID()
	topic := "bench." + id + ".orders"
	run := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		run[strings.TrimSpace(p)] = true
	}
	must(harness.CreateTopic(ctx, brokers, topic, 3))
	must(harness.CreateTopic(ctx, brokers, "bench."+id+".dlq", 1))
	defer cleanup(topic, "bench."+id+".dlq")

	mb := float64(*n) * float64(*size) / 1e6
	t0 := time.Now()
	preload(ctx, topic)
	d := time.Since(t0)
	fmt.Printf("preload   %d x %d B into %s: %.1fs (%.0f msgs/s)\n", *n, *size, topic, d.Seconds(), float64(*n)/d.Seconds())

	// The JetStream ceiling is the slowest hop and moves with the disk's other
	// users; measuring it right before the drain and again after it brackets
	// the drain instead of comparing it with one reading minutes away.
	var jBefore float64
	if run["ceilings"] && run["drain"] {
		jBefore = jetstreamCeiling(ctx, id+"b")
		fmt.Printf("RESULT ceiling jetstream async publish with msg ids, just before the drain: %.0f msgs/s\n", jBefore)
	}

	var drainRate float64
	if run["drain"] || run["latency"] {
		stop, legBDone := startBridge(ctx, id, topic, "kafka-nats,nats-pulsar", topic, "BENCH_"+id, "bench."+id+".>")
		start := time.Now()
		stopProf := profile(*cpuprof)
		first, full := waitLegB(ctx, "BENCH_"+id, topic, *n)
		d := time.Since(start)
		stopProf()
		drainRate = float64(*n) / d.Seconds()
		fmt.Printf("RESULT drain bridge Kafka->JetStream->Pulsar: %d msgs in %.1fs = %.0f msgs/s, %.1f MB/s (includes group join)\n", *n, d.Seconds(), drainRate, mb/d.Seconds())
		fmt.Printf("drain timeline: first message in the stream at %.1fs (start, group join), all in the stream at %.1fs, all confirmed by Pulsar at %.1fs; after the join %.0f msgs/s\n",
			first.Sub(start).Seconds(), full.Sub(start).Seconds(), d.Seconds(), float64(*n)/(d-first.Sub(start)).Seconds())
		_ = legBDone
		if run["latency"] {
			latency(ctx, topic, drainRate)
		}
		stop()
		deleteStream("BENCH_" + id)
	}

	var slowest float64
	if run["ceilings"] {
		j := jetstreamCeiling(ctx, id)
		k := kafkaCeiling(ctx, topic)
		p := pulsarCeiling(ctx, id)
		fmt.Printf("RESULT ceiling jetstream async publish with msg ids: %.0f msgs/s\n", j)
		fmt.Printf("RESULT ceiling kafka consume+commit: %.0f msgs/s\n", k)
		fmt.Printf("RESULT ceiling pulsar dedup producers (3, batching off): %.0f msgs/s\n", p)
		if jBefore > 0 {
			j = (jBefore + j) / 2
			fmt.Printf("RESULT ceiling jetstream, mean of before and after the drain: %.0f msgs/s\n", j)
		}
		slowest = min(k, j, p)
		if drainRate > 0 {
			fmt.Printf("RESULT bridge / slowest hop = %.0f / %.0f = %.2f (goal >= 0.8)\n", drainRate, slowest, drainRate/slowest)
		}
	}

	var ours float64
	if run["lega"] {
		subject := "bencha." + id + ".orders"
		stop, _ := startBridge(ctx, id+"a", topic, "kafka-nats", topic+"="+subject, "BENCHA_"+id, "bencha."+id+".>")
		start := time.Now()
		waitStream(ctx, "BENCHA_"+id, *n)
		d := time.Since(start)
		ours = float64(*n) / d.Seconds()
		fmt.Printf("RESULT leg A alone (bridge): %.0f msgs/s, %.1f MB/s\n", ours, mb/d.Seconds())
		stop()
		deleteStream("BENCHA_" + id)
	}
	if run["watermill"] {
		w := watermillLegA(ctx, id, topic)
		fmt.Printf("RESULT leg A watermill forwarder (watermill v1.5.1, watermill-kafka v3.0.6, watermill-nats v2.1.3): %.0f msgs/s, %.1f MB/s\n", w, float64(*n)*float64(*size)/1e6/(float64(*n)/w))
		if ours > 0 {
			fmt.Printf("RESULT bridge leg A / watermill = %.2f (goal >= 1.5)\n", ours/w)
		}
	}
}

// profile starts a CPU profile into path (none when empty) and returns its stop.
func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	must(err)
	must(pprof.StartCPUProfile(f))
	return func() { pprof.StopCPUProfile(); must(f.Close()) }
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// benchMessage builds seq's 1 KB event with the produce time in its payload.
func benchMessage(seq int) kafka.Message {
	data := map[string]any{"seq": seq, "ts": time.Now().UnixNano(), "pad": strings.Repeat("x", max(*size-120, 0))}
	e, err := event.New("order.created", "shanhai/bench", "k"+strconv.Itoa(seq%1000), data)
	must(err)
	m := kafka.Message{Key: []byte("k" + strconv.Itoa(seq%1000)), Value: e.Data}
	for k, v := range e.Headers() {
		m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte(fmt.Sprintf("00-%032x-%016x-01", seq+1, seq+1))})
	return m
}

func preload(ctx context.Context, topic string) {
	w := harness.Writer(brokers, topic)
	defer w.Close()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := 0; i < *n; i += 1000 {
		var msgs []kafka.Message
		for j := i; j < min(i+1000, *n); j++ {
			msgs = append(msgs, benchMessage(j))
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			must(w.WriteMessages(ctx, msgs...))
			<-sem
		}()
	}
	wg.Wait()
}

// startBridge runs the production wiring in this process.
func startBridge(ctx context.Context, id, topic, legs, topics, stream, subjects string) (stop func(), done chan error) {
	os.Setenv("LOG_LEVEL", "warn")
	os.Setenv("OTEL_TRACES_EXPORTER", "none")
	var cfg config.Config
	must(pkgconfig.Load(&cfg))
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", ""
	cfg.KafkaBrokers, cfg.NATSURL, cfg.PulsarURL = brokers, natsURL, pulsarU
	cfg.Legs, cfg.Topics, cfg.Group = legs, topics, "bench-"+id
	cfg.Stream, cfg.StreamSubjects = stream, []string{subjects}
	cfg.DLQTopic = strings.TrimSuffix(topic, ".orders") + ".dlq"
	must(cfg.Validate())
	rctx, cancel := context.WithCancel(ctx)
	done = make(chan error, 1)
	go func() { done <- app.Run(rctx, cfg) }()
	return func() { cancel(); <-done }, done
}

func js() jetstream.JetStream {
	nc, err := nats.Connect(natsURL)
	must(err)
	j, err := jetstream.New(nc)
	must(err)
	return j
}

// waitStream returns when the stream holds want messages, and when it first
// held any (the bridge had joined the group and published).
func waitStream(ctx context.Context, stream string, want int) (first time.Time) {
	j := js()
	for {
		s, err := j.Stream(ctx, stream)
		if err == nil {
			if info, err := s.Info(ctx); err == nil {
				if info.State.Msgs > 0 && first.IsZero() {
					first = time.Now()
				}
				if info.State.Msgs >= uint64(want) {
					return first
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLegB returns when the stream holds want messages and every partition's
// leg B consumer has acked them all (acks follow Pulsar confirmations), with
// the times the stream got its first message and its last.
func waitLegB(ctx context.Context, stream, topic string, want int) (first, full time.Time) {
	first = waitStream(ctx, stream, want)
	full = time.Now()
	j := js()
	for {
		ok := true
		for p := 0; p < 3 && ok; p++ {
			c, err := j.Consumer(ctx, stream, mapping.Name(topic, p))
			if err != nil {
				ok = false
				break
			}
			info, err := c.Info(ctx)
			ok = err == nil && info.NumPending == 0 && info.NumAckPending == 0
		}
		if ok {
			return first, full
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func deleteStream(name string) { _ = js().DeleteStream(context.Background(), name) }

func cleanup(topics ...string) {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	for _, t := range topics {
		req, _ := http.NewRequest(http.MethodDelete, adminURL+"/admin/v2/persistent/shanhai/events/"+t+"?force=true", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}

// latency produces at fixed rates into the running bridge and measures
// produce-call-to-Pulsar-receipt.
func latency(ctx context.Context, topic string, drainRate float64) {
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: pulsarU, Logger: pulsarlog.DefaultNopLogger()})
	must(err)
	defer client.Close()
	cons, err := client.Subscribe(pulsar.ConsumerOptions{Topic: "persistent://shanhai/events/" + topic, SubscriptionName: "bench-latency",
		SubscriptionInitialPosition: pulsar.SubscriptionPositionLatest, ReceiverQueueSize: 1000})
	must(err)
	defer cons.Close()
	var rs []int
	if *rates != "" {
		for _, s := range strings.Split(*rates, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(s))
			must(err)
			rs = append(rs, r)
		}
	} else {
		for _, f := range []float64{0.25, 0.5, 0.75} {
			rs = append(rs, int(drainRate*f)/100*100)
		}
	}
	w := harness.Writer(brokers, topic)
	w.BatchTimeout = time.Millisecond
	defer w.Close()
	seq := *n
	for _, rate := range rs {
		if rate <= 0 {
			continue
		}
		total := int(float64(rate) * rateDur.Seconds())
		var lat []time.Duration
		var mu sync.Mutex
		recvDone := make(chan struct{})
		go func() {
			defer close(recvDone)
			for len(lat) < total {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				m, err := cons.Receive(rctx)
				cancel()
				if err != nil {
					return
				}
				now := time.Now()
				var v struct {
					TS int64 `json:"ts"`
				}
				_ = json.Unmarshal(m.Payload(), &v)
				_ = cons.Ack(m)
				mu.Lock()
				lat = append(lat, now.Sub(time.Unix(0, v.TS)))
				mu.Unlock()
			}
		}()
		tick := 10 * time.Millisecond
		per := max(rate/100, 1)
		start := time.Now()
		var sent atomic.Int64
		var wg sync.WaitGroup
		for i := 0; sent.Load() < int64(total); i++ {
			msgs := make([]kafka.Message, 0, per)
			for j := 0; j < per && int(sent.Load())+len(msgs) < total; j++ {
				msgs = append(msgs, benchMessage(seq))
				seq++
			}
			sent.Add(int64(len(msgs)))
			wg.Add(1)
			go func() { defer wg.Done(); must(w.WriteMessages(ctx, msgs...)) }()
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * tick)))
		}
		wg.Wait()
		achieved := float64(total) / time.Since(start).Seconds()
		<-recvDone
		mu.Lock()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(int(p*float64(len(lat))), len(lat)-1)].Round(100 * time.Microsecond)
		}
		fmt.Printf("RESULT latency at %d msgs/s (achieved %.0f, %d received of %d): p50=%v p99=%v p99.9=%v max=%v\n",
			rate, achieved, len(lat), total, q(0.5), q(0.99), q(0.999), q(1))
		mu.Unlock()
	}
}

// kafkaCeiling consumes the preloaded topic with the same group API and
// readers as leg A, committing every second and at the end.
func kafkaCeiling(ctx context.Context, topic string) float64 {
	start := time.Now()
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{ID: "bench-ceiling-" + harness.ID(), Brokers: brokers, Topics: []string{topic},
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second})
	must(err)
	defer cg.Close()
	gen, err := cg.Next(ctx)
	must(err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	pos := map[int]int64{}
	for _, a := range gen.Assignments[topic] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, a.ID)
			must(err)
			end, err := conn.ReadLastOffset()
			conn.Close()
			must(err)
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: a.ID, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond, QueueCapacity: 128})
			defer r.Close()
			must(r.SetOffset(a.Offset))
			for {
				m, err := r.FetchMessage(ctx)
				must(err)
				mu.Lock()
				pos[a.ID] = m.Offset + 1
				mu.Unlock()
				if m.Offset+1 >= end {
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				offs := map[string]map[int]int64{topic: {}}
				for p, o := range pos {
					offs[topic][p] = o
				}
				mu.Unlock()
				_ = gen.CommitOffsets(offs)
			}
		}
	}()
	wg.Wait()
	close(stop)
	offs := map[string]map[int]int64{topic: pos}
	must(gen.CommitOffsets(offs))
	return float64(*n) / time.Since(start).Seconds()
}

// jetstreamCeiling publishes n messages shaped like leg A's (headers, msg id,
// three partition subjects) asynchronously with the same window, waiting for
// every ack.
func jetstreamCeiling(ctx context.Context, id string) float64 {
	nc, err := nats.Connect(natsURL, nats.ReconnectBufSize(-1))
	must(err)
	defer nc.Close()
	j, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(3*512))
	must(err)
	name := "BENCHJ_" + id
	_, err = j.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"benchj." + id + ".>"}, Duplicates: 2 * time.Minute})
	must(err)
	defer deleteStream(name)
	subject := "benchj." + id + ".orders"
	msgs := make([]*nats.Msg, 0, 1000)
	for i := 0; i < 1000; i++ {
		k := benchMessage(i)
		h := nats.Header{}
		for _, kh := range k.Headers {
			h[kh.Key] = []string{string(kh.Value)}
		}
		for _, x := range []string{kafkaleg.HeaderTopic, kafkaleg.HeaderPartition, kafkaleg.HeaderOffset, kafkaleg.HeaderKey, kafkaleg.HeaderTimestamp} {
			h[x] = []string{"1234567"}
		}
		msgs = append(msgs, &nats.Msg{Subject: stream.PartitionSubject(subject, i%3), Header: h, Data: k.Value})
	}
	start := time.Now()
	futs := make(chan jetstream.PubAckFuture, 3*512)
	done := make(chan struct{})
	go func() {
		for f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				must(err)
			}
		}
		close(done)
	}()
	for i := 0; i < *n; i++ {
		src := msgs[i%len(msgs)]
		h := nats.Header{}
		for k, v := range src.Header {
			h[k] = v
		}
		h[jetstream.MsgIDHeader] = []string{"bench/" + strconv.Itoa(i)}
		f, err := j.PublishMsgAsync(&nats.Msg{Subject: src.Subject, Header: h, Data: src.Data}, jetstream.WithRetryAttempts(0), jetstream.WithStallWait(time.Minute))
		must(err)
		futs <- f
	}
	close(futs)
	<-done
	return float64(*n) / time.Since(start).Seconds()
}

// pulsarCeiling sends n messages through three dedup producers (one per
// partition, batching off, explicit sequence ids, infinite send timeout).
func pulsarCeiling(ctx context.Context, id string) float64 {
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: pulsarU, Logger: pulsarlog.DefaultNopLogger()})
	must(err)
	defer client.Close()
	topic := "benchceiling." + id
	defer cleanup(topic)
	payload := benchMessage(0)
	props := map[string]string{}
	for _, kh := range payload.Headers {
		props[kh.Key] = string(kh.Value)
	}
	props["__kafka_topic"], props["__kafka_partition"], props["__kafka_offset"] = "t", "0", "1234567"
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prod, err := client.CreateProducer(pulsar.ProducerOptions{Topic: "persistent://shanhai/events/" + topic, Name: "bench-ceiling-" + id + "-" + strconv.Itoa(p),
				SendTimeout: -1, DisableBatching: true, MaxPendingMessages: 512})
			must(err)
			defer prod.Close()
			var acks sync.WaitGroup
			for i := p; i < *n; i += 3 {
				seq := int64(i)
				acks.Add(1)
				prod.SendAsync(ctx, &pulsar.ProducerMessage{Payload: payload.Value, Key: "k", Properties: props, SequenceID: &seq},
					func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) { must(err); acks.Done() })
			}
			acks.Wait()
		}()
	}
	wg.Wait()
	return float64(*n) / time.Since(start).Seconds()
}

// watermillLegA forwards the preloaded topic with Watermill: a Kafka
// subscriber (Sarama consumer group, oldest offset) and a JetStream publisher
// (synchronous publish with Nats-Msg-Id from the message UUID), connected by a
// router handler; the time is until the stream holds n messages.
func watermillLegA(ctx context.Context, id, topic string) float64 {
	logger := watermill.NewSlogLoggerWithLevelMapping(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), nil)
	subject := "benchw." + id + ".orders"
	name := "BENCHW_" + id
	_, err := js().CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"benchw." + id + ".>"}, Duplicates: 2 * time.Minute})
	must(err)
	defer deleteStream(name)
	start := time.Now()
	sc := wkafka.DefaultSaramaSubscriberConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{Brokers: brokers, Unmarshaler: wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc, ConsumerGroup: "bench-watermill-" + id}, logger)
	must(err)
	pub, err := wnats.NewPublisher(wnats.PublisherConfig{URL: natsURL, JetStream: wnats.JetStreamConfig{TrackMsgId: true}}, logger)
	must(err)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	must(err)
	router.AddHandler("forward", topic, sub, subject, pub, func(m *message.Message) ([]*message.Message, error) {
		// Same dedup key as the bridge (topic/partition/offset), so a replay is dropped by JetStream too.
		p, _ := wkafka.MessagePartitionFromCtx(m.Context())
		o, _ := wkafka.MessagePartitionOffsetFromCtx(m.Context())
		m.UUID = kafkaleg.MsgID(topic, int(p), o)
		return []*message.Message{m}, nil
	})
	rctx, cancel := context.WithCancel(ctx)
	go func() { _ = router.Run(rctx) }()
	waitStream(ctx, name, *n)
	d := time.Since(start)
	cancel()
	_ = router.Close()
	return float64(*n) / d.Seconds()
}
