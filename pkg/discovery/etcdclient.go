package discovery

import (
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The gRPC keepalive of EtcdConfig: a ping after EtcdKeepAliveTime without
// traffic, the connection replaced when no answer comes within
// EtcdKeepAliveTimeout. Ten seconds is the least gRPC sends at (it raises a
// shorter time to it) and above etcd's default --grpc-keepalive-min-time
// (5 s), below which etcd closes the connection as abusive.
const (
	EtcdKeepAliveTime    = 10 * time.Second
	EtcdKeepAliveTimeout = 5 * time.Second
)

// EtcdConfig is the etcd client configuration of every binary: it logs
// through log (EtcdLogger) and pings its connection while a watch or lease
// keep-alive runs on it.
//
// Without the pings a connection that went silent (etcd's host gone without
// a reset, a pod rescheduled, a dropped NAT entry) was never noticed: a
// watch on it waits for events, the resolver's revision probe failing on it
// says nothing, and the snapshot stopped changing with every instance
// registered since left out, until the kernel gave up on the connection
// (about fifteen minutes of retransmissions), or for good behind a proxy that
// keeps it open. A lease's keep-alives lapsed too, and the registry's new
// lease waited on the same connection. With them, gRPC closes such a
// connection within EtcdKeepAliveTime + EtcdKeepAliveTimeout and the client
// resumes its watches and keep-alives on a new one
// (TestResolverFollowsEtcdAfterItsConnectionGoesSilent,
// TestRegistryComesBackAfterItsConnectionGoesSilent). Only while a
// stream is open: etcd refuses pings on an idle connection by default, and
// an idle connection has nothing to notice.
func EtcdConfig(endpoints []string, dialTimeout time.Duration, log *slog.Logger) clientv3.Config {
	return clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          dialTimeout,
		DialKeepAliveTime:    EtcdKeepAliveTime,
		DialKeepAliveTimeout: EtcdKeepAliveTimeout,
		Logger:               EtcdLogger(log),
	}
}
