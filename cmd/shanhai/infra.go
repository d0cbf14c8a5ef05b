package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// Topics are the Kafka topics of the platform (conventions.md); the embedded
// Kafka seeds them with three partitions each, like scripts/deps.sh does, so a
// consumer group spreads over the same partition count as in production.
var Topics = []string{"shanhai.users", "shanhai.orders", "shanhai.payments", "shanhai.dlq"}

// Infra is the embedded infrastructure: real Go implementations of the
// servers the binaries talk to, each on a random loopback port. Only the
// servers differ from production; clients and code paths are the same.
type Infra struct {
	Dir   string     // data directory (SQLite files, JetStream, etcd)
	mu    sync.Mutex // guards env while the servers start concurrently
	env   map[string]string
	kafka *kfake.Cluster
	nats  *natsserver.Server
	redis *miniredis.Miniredis
	etcd  *embed.Etcd
	lock  *os.File // the data directory's lock (lockDataDir), held until Close
}

// StartInfra starts Kafka (kfake), NATS with JetStream, Redis (miniredis) and
// etcd in this process, all at once: they do not depend on each other, and
// etcd's start-up (a raft election) is the longest, so the others hide in it.
//
// The data directory is taken first: another run's would be emptied of its
// JetStream store below, and its etcd's lock would keep this one waiting.
func StartInfra(ctx context.Context, dir string) (*Infra, error) {
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	in := &Infra{Dir: dir, env: map[string]string{}, lock: lock}
	errc := make(chan error, 4)
	go func() { errc <- in.startKafka() }()
	go func() { errc <- in.startNATS() }()
	go func() { errc <- in.startRedis() }()
	go func() { errc <- in.startEtcd(ctx) }()
	var errs []error
	for range 4 {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Env is the connection environment for the binaries.
func (in *Infra) Env() map[string]string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.env)
}

func (in *Infra) set(name, value string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.env[name] = value
}

func (in *Infra) startKafka() error {
	// A cluster id of its own: kfake's default is "kfake" in every run, and the bridge names its Pulsar producers by
	// the cluster id because offsets count from 0 again in another cluster (bridge/README.md, "What Pulsar's dedup
	// needs"). With one id for every run, a run archiving to a namespace an earlier run used had its records dropped
	// by Pulsar's dedup as replays of the earlier run's.
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("embedded kafka cluster id: %w", err)
	}
	c, err := kfake.NewCluster(
		kfake.ClusterID(base64.RawURLEncoding.EncodeToString(id)),
		kfake.NumBrokers(1),
		kfake.SeedTopics(3, Topics...),
		kfake.DefaultNumPartitions(3),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return fmt.Errorf("embedded kafka: %w", err)
	}
	in.kafka = c
	in.set("KAFKA_BROKERS", c.ListenAddrs()[0])
	return nil
}

func (in *Infra) startNATS() error {
	// JetStream starts empty, as the Kafka it carries from does. An earlier run's store, in a -data directory used
	// again, held its records under Nats-Msg-Id topic/partition/offset, and this run's Kafka counts offsets from 0
	// again: within the stream's duplicate window (2 minutes) JetStream dropped this run's records at those offsets
	// as duplicates, and their orders stayed PENDING.
	store := filepath.Join(in.Dir, "jetstream")
	if err := os.RemoveAll(store); err != nil {
		return fmt.Errorf("embedded nats: an earlier run's store: %w", err)
	}
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  store,
		NoSigs:    true,
		NoLog:     true,
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("embedded nats: not ready after 10s")
	}
	in.nats = s
	in.set("NATS_URL", s.ClientURL())
	return nil
}

func (in *Infra) startRedis() error {
	r := miniredis.NewMiniRedis()
	if err := r.Start(); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	in.redis = r
	in.set("REDIS_URL", "redis://"+r.Addr()+"/0")
	return nil
}

func (in *Infra) startEtcd(ctx context.Context) error {
	ports, err := freeport.Ports(2)
	if err != nil {
		return err
	}
	client, peer := ports[0], ports[1]
	cfg := embed.NewConfig()
	cfg.Name = "shanhai"
	cfg.Dir = filepath.Join(in.Dir, "etcd")
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(client)}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peer)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	// One member elects itself; a short tick makes that take tens of ms.
	cfg.TickMs, cfg.ElectionMs = 10, 50
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(10 * time.Second):
		e.Close()
		return errors.New("embedded etcd: not ready after 10s")
	case <-ctx.Done():
		e.Close()
		return ctx.Err()
	}
	// Revoked before the Infra holds it: on a failure this closes it, and
	// Close must not close it again (embed.Etcd's Close panics then).
	if err := revokeLeftLeases(ctx, e); err != nil {
		e.Close()
		return err
	}
	in.etcd = e
	in.set("ETCD_ENDPOINTS", cu.Host)
	return nil
}

// revokeLeftLeases revokes every lease a fresh start finds, with the keys
// they hold. Nothing but an earlier run on this data directory can have
// made one (the directory is this run's alone: lockDataDir), and a run that
// was killed, or whose stop gave up, never revoked its own: its services'
// registrations. -data keeps etcd, and the new leader renews every lease it
// recovers for a full TTL, so those instances stayed listed for about ten
// seconds after the banner; at the same -port they were this run's
// addresses, at another nothing answered there, and the gateway's breaker
// for user opened on them (502, then 503 for the JWKS and log ins). The
// run's own keys without a lease (dynamic configuration) are kept.
func revokeLeftLeases(ctx context.Context, e *embed.Etcd) error {
	leases, err := e.Server.LeaseLeases(ctx, &etcdserverpb.LeaseLeasesRequest{})
	if err != nil {
		return fmt.Errorf("embedded etcd: list an earlier run's leases: %w", err)
	}
	for _, l := range leases.Leases {
		if _, err := e.Server.LeaseRevoke(ctx, &etcdserverpb.LeaseRevokeRequest{ID: l.ID}); err != nil {
			return fmt.Errorf("embedded etcd: revoke an earlier run's lease %x: %w", l.ID, err)
		}
	}
	if n := len(leases.Leases); n > 0 {
		slog.Info("embedded etcd: revoked what an earlier run on this data directory left registered", "leases", n)
	}
	return nil
}

// Close stops every server that started; safe on a partly started Infra.
func (in *Infra) Close() {
	if in.etcd != nil {
		in.etcd.Close()
	}
	if in.nats != nil {
		in.nats.Shutdown()
		in.nats.WaitForShutdown()
	}
	if in.redis != nil {
		in.redis.Close()
	}
	if in.kafka != nil {
		in.kafka.Close()
	}
	if in.lock != nil {
		_ = in.lock.Close() // releases the flock
	}
	slog.Debug("embedded infrastructure stopped")
}
