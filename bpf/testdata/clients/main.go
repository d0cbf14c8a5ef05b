// Command clients is the probe tests' client-side target: it makes a known number of database/sql, go-redis,
// kafka-go, NATS, Pulsar and net/http client calls against the real servers named by the usual environment variables,
// prints how many of each it made and how many failed as one JSON line, then waits for stdin to close so the test
// can read the agent while the process is alive.
//
//	clients -n 20 -http http://127.0.0.1:PORT/work
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// counts is "op" -> calls and "op error" -> failed calls.
type counts map[string]int

func (c counts) add(op string, err error) {
	c[op]++
	if err != nil {
		c[op+" error"]++
	}
}

func main() {
	n := flag.Int("n", 10, "calls of each kind")
	httpURL := flag.String("http", "", "URL for net/http client calls (skipped when empty)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := counts{}
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}

	if *httpURL != "" {
		hc := &http.Client{Timeout: 10 * time.Second}
		for i := range *n {
			url := *httpURL + "?status=" + strconv.Itoa([]int{200, 404, 503}[i%3])
			resp, err := hc.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				c["http "+strconv.Itoa(resp.StatusCode)]++
			}
			c.add("http", err)
		}
		_, err := hc.Get("http://127.0.0.1:1/refused")
		c.add("http", err)
		// Calls their context ends: before the call (roundTrip returns at once) and during it (the handler sleeps
		// past the deadline): both are calls that failed.
		done, stop := context.WithCancel(ctx)
		stop()
		c.add("http", get(hc, done, *httpURL))
		short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		c.add("http", get(hc, short, *httpURL+"?us=2000000"))
		stop()
		// A call inside a call on one goroutine: the Transport calls its Proxy function inside roundTrip, and this
		// one asks a server first (as a proxy auto-config lookup would). Two calls, both counted.
		inner := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		outer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
			c.add("http", get(inner, r.Context(), *httpURL+"?status=200"))
			c["http 200"]++
			return nil, nil
		}}}
		c.add("http", get(outer, ctx, *httpURL+"?status=404"))
		c["http 404"]++
		// The same with the goroutine's stack moved in between: on a new goroutine (a stack of a few KiB) the Proxy
		// grows it by 256 KiB, which copies it elsewhere, before its call. The inner call is told by its depth from
		// the stack's top, which the move keeps; an entry's raw stack pointer would no longer say it.
		moved := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
			growStack(256)
			c.add("http", get(inner, r.Context(), *httpURL+"?status=200"))
			c["http 200"]++
			return nil, nil
		}}}
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			c.add("http", get(moved, ctx, *httpURL+"?status=404"))
			c["http 404"]++
		}()
		<-finished
		lostCall(ctx, c, *httpURL)
	}

	if u := os.Getenv("DATABASE_URL"); u != "" {
		db, err := sql.Open("pgx", u)
		if err != nil {
			fail("sql open", err)
		}
		db.SetMaxOpenConns(1)
		_, err = db.ExecContext(ctx, "CREATE TEMP TABLE probe_t (id int)")
		c.add("sql exec", err)
		for i := range *n {
			_, err := db.ExecContext(ctx, "INSERT INTO probe_t VALUES ($1)", i)
			c.add("sql exec", err)
			rows, err := db.QueryContext(ctx, "SELECT id FROM probe_t WHERE id = $1", i)
			if err == nil {
				rows.Close()
			}
			c.add("sql query", err)
		}
		_, err = db.QueryContext(ctx, "SELECT * FROM no_such_table")
		c.add("sql query", err)
		// An error raised while the rows are read (PostgreSQL fails at the third) reaches the program from
		// Rows.Next and Rows.Err, after queryDC returned: the probe counts that query as not failed
		// (bpf/README.md, "Client calls").
		rows, err := db.QueryContext(ctx, "SELECT 1 / (3 - i) FROM generate_series(1, 5) i")
		if err != nil {
			fail("sql query failing in its rows", err)
		}
		for rows.Next() {
		}
		if rows.Err() == nil {
			fail("sql query failing in its rows", errors.New("no error reading the rows"))
		}
		rows.Close()
		c.add("sql query", nil)
		// A query its context cuts off while PostgreSQL runs it: the driver cancels it, queryDC fails.
		short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = db.QueryContext(short, "SELECT pg_sleep(2)")
		stop()
		if err == nil {
			fail("sql query past its deadline", errors.New("no error"))
		}
		c.add("sql query", err)
		db.Close()
	}

	if u := os.Getenv("REDIS_URL"); u != "" {
		// go-redis's default options (RESP3, CLIENT SETINFO, maintenance notifications in auto mode; the services turn
		// the last two off in pkg/redisurl, a program using the defaults does not): each new connection's
		// handshake runs its own commands through _process and processPipeline inside the application's first call,
		// and Redis 7.0 rejects some of them. Only the application's calls below may be counted.
		opt, err := redis.ParseURL(u)
		if err != nil {
			fail("redis url", err)
		}
		opt.MaxRetries = -1 // one _process per command: a retry would be a second call
		missing := "probe:missing:" + strconv.FormatInt(time.Now().UnixNano(), 10)
		rdb := redis.NewClient(opt)
		// The first command dials: a failed GET (redis.Nil: go-redis reports a missing key as an error) must keep its
		// own error flag, not the handshake's.
		_, err = rdb.Get(ctx, missing).Result()
		c.add("redis", err)
		for i := range *n {
			c.add("redis", rdb.Set(ctx, "probe:"+strconv.Itoa(i), i, time.Minute).Err())
		}
		rdb.Close()
		// A fresh client whose first call is a pipeline, so the handshake runs inside processPipeline this time.
		rdb = redis.NewClient(opt)
		for i := range *n {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "probe:p:"+strconv.Itoa(i), i, time.Minute)
				p.Get(ctx, "probe:p:"+strconv.Itoa(i))
				return nil
			})
			c.add("redis pipeline", err)
		}
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, missing)
			p.Get(ctx, "probe:p:0")
			return nil
		})
		c.add("redis pipeline", err) // the first command's error reply: redis.Nil
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, "probe:p:0")
			p.Get(ctx, missing)
			return nil
		})
		if !errors.Is(err, redis.Nil) {
			fail("redis pipeline of a missing key", err)
		}
		// Exec returns a later command's error reply too, but go-redis finds it after the call the probe ends at
		// (bpf/README.md, "Client calls"): not an error there.
		c.add("redis pipeline", nil)
		for range *n {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "probe:tx")
				p.Expire(ctx, "probe:tx", time.Minute)
				return nil
			})
			c.add("redis tx_pipeline", err)
		}
		rdb.Close()
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, missing)
			return nil
		})
		if err == nil {
			fail("redis pipeline on a closed client", errors.New("no error"))
		}
		c.add("redis pipeline", err) // failed as a whole

		// A call that never returns (OnConnect panics inside the first command's _process; recovered here) leaves
		// its slot taken. A later call on this goroutine from deeper in the stack must take its place, not be taken
		// for a call nested inside it (include/calls.h, struct call_nest).
		var panicked atomic.Bool
		opt.OnConnect = func(context.Context, *redis.Conn) error {
			if panicked.CompareAndSwap(false, true) {
				panic("clients: OnConnect panics once")
			}
			return nil
		}
		rdb = redis.NewClient(opt)
		func() {
			defer func() { recover() }()
			rdb.Get(ctx, missing)
		}()
		c.add("redis", deeper(8, func() error { return rdb.Set(ctx, "probe:deep", 1, time.Minute).Err() }))
		rdb.Close()
	}

	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		w := &kafka.Writer{Addr: kafka.TCP(b), Topic: "shanhai.bpf-probe-test", AllowAutoTopicCreation: true,
			BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireOne}
		for i := range *n {
			err := w.WriteMessages(ctx, kafka.Message{Value: []byte(strconv.Itoa(i))})
			c.add("kafka", err)
		}
		done, stop := context.WithCancel(ctx)
		stop()
		err := w.WriteMessages(done, kafka.Message{Value: []byte("cancelled")})
		if err == nil {
			fail("kafka write with a cancelled context", errors.New("no error"))
		}
		c.add("kafka", err)
		w.Close()
	}

	if u := os.Getenv("NATS_URL"); u != "" {
		nc, err := nats.Connect(u)
		if err != nil {
			fail("nats connect", err)
		}
		for i := range *n {
			c.add("nats", nc.Publish("shanhai.bpf-probe-test", []byte(strconv.Itoa(i))))
		}
		if err := nc.Flush(); err != nil {
			fail("nats flush", err)
		}
		nc.Close()
	}

	if u := os.Getenv("PULSAR_URL"); u != "" {
		pc, err := pulsar.NewClient(pulsar.ClientOptions{URL: u, Logger: quietLogger()})
		if err != nil {
			fail("pulsar client", err)
		}
		prod, err := pc.CreateProducer(pulsar.ProducerOptions{Topic: "persistent://public/default/bpf-probe-test"})
		if err != nil {
			fail("pulsar producer", err)
		}
		for i := range *n {
			_, err := prod.Send(ctx, &pulsar.ProducerMessage{Payload: []byte(strconv.Itoa(i))})
			c.add("pulsar", err)
		}
		done, stop := context.WithCancel(ctx)
		stop()
		_, err = prod.Send(done, &pulsar.ProducerMessage{Payload: []byte("cancelled")})
		if err == nil {
			fail("pulsar send with a cancelled context", errors.New("no error"))
		}
		c.add("pulsar", err)
		prod.Close()
		pc.Close()
	}

	json.NewEncoder(os.Stdout).Encode(c)
	io.Copy(io.Discard, os.Stdin)
}

// growStack recurses through n frames of 1 KiB each, so that a goroutine's stack smaller than that is grown (copied).
//
//go:noinline
func growStack(n int) byte {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return growStack(n-1) + pad[n%len(pad)]
}

// get makes one GET of url under ctx and returns its error, the body read and closed.
func get(hc *http.Client, ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// deeper calls f n frames further down the stack.
//
//go:noinline
func deeper(n int, f func() error) error {
	if n == 0 {
		return f()
	}
	return deeper(n-1, f)
}
