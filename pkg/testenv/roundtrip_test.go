package testenv_test

// One real round trip to each server scripts/deps.sh runs. Each would fail without the server, and each uses the client
// library the services use, so a broker version the clients cannot speak to shows up here first.

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func TestPostgresRoundTripInFreshDatabase(t *testing.T) {
	c := ctx(t, 30*time.Second)
	var name string
	t.Run("fresh", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(c, `CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)`); err != nil {
			t.Fatalf("create table: %v", err)
		}
		if _, err := db.ExecContext(c, `INSERT INTO notes (body) VALUES ($1), ($2)`, "山", "海"); err != nil {
			t.Fatalf("insert: %v", err)
		}
		var got string
		if err := db.QueryRowContext(c, `SELECT string_agg(body, '' ORDER BY id) FROM notes`).Scan(&got); err != nil {
			t.Fatalf("select: %v", err)
		}
		if got != "山海" {
			t.Fatalf("select = %q, want 山海", got)
		}
		if err := db.QueryRowContext(c, `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}

		// A second call gives another database that does not see the first one's table.
		other, err := sql.Open("pgx", testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		var n int
		if err := other.QueryRowContext(c, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'notes'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("second test database sees the first one's table")
		}
	})

	// The cleanup of the subtest dropped its database.
	admin, err := sql.Open("pgx", testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	if err := admin.QueryRowContext(c, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if name == "" || exists {
		t.Fatalf("test database %q still exists after cleanup", name)
	}
}

func TestRedisRoundTrip(t *testing.T) {
	c := ctx(t, 10*time.Second)
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	key, want := "testenv:"+t.Name()+":"+randomWord(t), randomWord(t)
	if err := rdb.Set(c, key, want, time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	defer rdb.Del(context.Background(), key)
	got, err := rdb.Get(c, key).Result()
	if err != nil || got != want {
		t.Fatalf("GET = %q, %v; want %q", got, err, want)
	}
}

func TestEtcdRoundTrip(t *testing.T) {
	c := ctx(t, 10*time.Second)
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key, want := "/shanhai/test/testenv/"+randomWord(t), randomWord(t)
	if _, err := cli.Put(c, key, want); err != nil {
		t.Fatalf("put: %v", err)
	}
	defer cli.Delete(context.Background(), key)
	resp, err := cli.Get(c, key)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
		t.Fatalf("get = %v, want one value %q", resp.Kvs, want)
	}
}

func TestNATSJetStreamRoundTrip(t *testing.T) {
	c := ctx(t, 20*time.Second)
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id := randomWord(t)
	subject := "testenv." + id
	stream, err := js.CreateStream(c, jetstream.StreamConfig{Name: "TESTENV_" + id, Subjects: []string{subject}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create stream (is JetStream enabled?): %v", err)
	}
	defer js.DeleteStream(context.Background(), "TESTENV_"+id)

	msg := nats.NewMsg(subject)
	msg.Data = []byte("hello " + id)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := js.PublishMsg(c, msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	// The same Nats-Msg-Id again is a duplicate: the stream keeps one copy.
	if dup, err := js.PublishMsg(c, msg); err != nil || !dup.Duplicate {
		t.Fatalf("republish with the same Nats-Msg-Id: ack %+v, %v; want a duplicate ack", dup, err)
	}

	cons, err := stream.CreateConsumer(c, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "hello "+id || ack.Sequence != 1 {
		t.Fatalf("fetched %q (first seq %d), want exactly [%q] at seq 1", got, ack.Sequence, "hello "+id)
	}
}

func TestKafkaRoundTripThroughConsumerGroup(t *testing.T) {
	c := ctx(t, 60*time.Second)
	brokers := testenv.Kafka(t)
	topic := "testenv." + randomWord(t)
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.CreateTopics(c, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	defer client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}}
	defer w.Close()
	want := kafka.Message{Key: []byte("order-1"), Value: []byte(`{"n":1}`), Headers: []kafka.Header{{Key: "ce_type", Value: []byte("order.created")}}}
	if err := w.WriteMessages(c, want); err != nil {
		t.Fatalf("produce: %v", err)
	}

	// A consumer group, not a partition reader: the services consume through groups, and group protocol versions are
	// where client and broker versions disagree first.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: "testenv-" + randomWord(t), StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	got, err := r.ReadMessage(c)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if string(got.Key) != "order-1" || string(got.Value) != `{"n":1}` || len(got.Headers) != 1 || string(got.Headers[0].Value) != "order.created" {
		t.Fatalf("consumed key %q value %q headers %v; want what was produced", got.Key, got.Value, got.Headers)
	}
}

func TestPulsarRoundTripInDedupNamespace(t *testing.T) {
	c := ctx(t, 60*time.Second)
	serviceURL, adminURL := testenv.Pulsar(t)

	// scripts/deps.sh created shanhai/events with deduplication on; the bridge depends on it.
	resp, err := http.Get(adminURL + "/admin/v2/namespaces/shanhai/events/deduplication")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "true" {
		t.Fatalf("deduplication on shanhai/events: HTTP %d %q, want 200 true", resp.StatusCode, body)
	}

	client, err := pulsar.NewClient(pulsar.ClientOptions{
		URL: serviceURL, ConnectionTimeout: 5 * time.Second, OperationTimeout: 30 * time.Second,
		Logger: pulsarlog.NewLoggerWithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic := "persistent://shanhai/events/testenv-" + randomWord(t)
	consumer, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "testenv", SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer consumer.Close()
	producer, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic, Name: "testenv-" + randomWord(t)})
	if err != nil {
		t.Fatalf("create producer: %v", err)
	}
	defer producer.Close()
	seq := int64(7)
	msg := &pulsar.ProducerMessage{Payload: []byte("archived"), Properties: map[string]string{"__kafka_offset": "7"}, SequenceID: &seq}
	if _, err := producer.Send(c, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := consumer.Receive(c)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if err := consumer.Ack(got); err != nil {
		t.Fatal(err)
	}
	if string(got.Payload()) != "archived" || got.Properties()["__kafka_offset"] != "7" {
		t.Fatalf("received %q %v, want what was sent", got.Payload(), got.Properties())
	}
}

// TestNATSServerList: nats.go takes NATS_URL as a comma-separated server list and connects to any server of it that
// answers, so testenv.NATS must as well: it refused such a list as one malformed URL, even with NATS up. A list
// none of whose servers answers fails naming the list, without its password.
func TestNATSServerList(t *testing.T) {
	up := testenv.NATS(t)
	down := "nats://bob:s3cret@" + testenv.ClosedPort(t)
	t.Run("one answers", func(t *testing.T) {
		list := down + ", " + up
		t.Setenv("NATS_URL", list)
		if msg := testenv.Failure(t, func(tb testing.TB) {
			if got := testenv.NATS(tb); got != list {
				tb.Fatalf("NATS() = %q, want the list %q", got, list)
			}
		}); msg != "" {
			t.Fatalf("NATS_URL=%s: %s", list, msg)
		}
		nc, err := nats.Connect(list, nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatalf("connect to the list: %v", err)
		}
		nc.Close()
	})
	t.Run("none answers", func(t *testing.T) {
		other := testenv.ClosedPort(t)
		t.Setenv("NATS_URL", down+","+other)
		msg := testenv.Failure(t, func(tb testing.TB) { testenv.NATS(tb) })
		addr := strings.TrimPrefix(down, "nats://bob:s3cret@")
		want := "NATS not reachable at nats://bob:xxxxx@" + addr + "," + other + ": " + testenv.Hint
		if !strings.HasPrefix(msg, want) || strings.Contains(msg, "s3cret") {
			t.Fatalf("failure message = %q, want it to start with %q and show no password", msg, want)
		}
	})
	// nats.go splits at every comma, so a password with one (s3cret,x) leaves "bob:s3cret" read as a host whose port
	// is the password's first part: the dial errors the failure quoted named it (lookup tcp/s3cret: unknown port).
	t.Run("comma in a password", func(t *testing.T) {
		for _, list := range []string{
			"bob:s3cret,x@" + testenv.ClosedPort(t),
			"nats://127.0.0.1:1,bob:s3cret,x@" + testenv.ClosedPort(t),
		} {
			t.Setenv("NATS_URL", list)
			msg := testenv.Failure(t, func(tb testing.TB) { testenv.NATS(tb) })
			if !strings.HasPrefix(msg, "NATS not reachable at ") || strings.Contains(msg, "s3cret") {
				t.Errorf("NATS_URL=%s: failure message = %q, want NATS named unreachable without the password", list, msg)
			}
		}
	})
}
