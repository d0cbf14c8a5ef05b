// Package pgconnect opens the PostgreSQL connection pool that pkg/database hands to gorm, and lets a binary begin
// connecting it before its package initialisation is over (Start, and the early package that calls it).
//
// It imports pgx and the standard library only, not gorm, so it is initialised early: a service's package
// initialisation (kafka-go's protocol tables, gRPC, OpenTelemetry, gorm) and its wiring take several milliseconds of
// one CPU before the database is asked for, and a connect started meanwhile (the server forks a backend, the
// start-up exchange, pgx's type map) is done or nearly done when the migration check wants it.
package pgconnect

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// ConnectTimeout bounds each connection's set-up to PostgreSQL (dial,
// TLS, start-up) when the URL sets no connect_timeout of its own. pgx has
// none by default, and gorm's first ping no deadline: a server address that
// accepted connections and never answered (a firewall or proxy with nothing
// behind it) held a service's start for ever without a word. 10 s is far
// above a loaded server's connect time; the service then stops naming the
// database, and its supervisor starts it again.
const ConnectTimeout = 10 * time.Second

var (
	mu      sync.Mutex
	started = map[string]*early{} // by the URL given to Start
)

// early is a pool Start is connecting; done closes when the attempt ended, err (set before) its failure if it failed.
type early struct {
	pool *sql.DB
	done chan struct{}
	err  error
}

// Start opens the pool for rawURL and connects one connection to it in the background, for the next Open of the
// same URL. A URL that is not PostgreSQL's, or does not parse, is ignored: Open then reports what is wrong with it. So
// is a failed connect: the pool connects again at its first statement, whose error is the one the caller sees.
func Start(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return
	}
	pool, err := newPool(rawURL)
	if err != nil {
		return
	}
	// Closed by database/sql if nobody takes the pool (the binary asks for another URL): Open's caller sets its own.
	pool.SetConnMaxIdleTime(time.Minute)
	e := &early{pool: pool, done: make(chan struct{})}
	mu.Lock()
	if _, dup := started[rawURL]; dup {
		mu.Unlock()
		_ = pool.Close()
		return
	}
	started[rawURL] = e
	mu.Unlock()
	go func() {
		defer close(e.done)
		// The connect's own timeout (connect_timeout) bounds this.
		c, err := pool.Conn(context.Background())
		if err != nil {
			e.err = err
			return
		}
		_ = c.Close() // back to the pool, idle, for Open's caller
	}()
}

// Open returns a pool for rawURL that has connected nothing yet, or, once after Start(rawURL), the pool Start
// connected: it waits for that connect to end, since a statement sent meanwhile would open a second connection rather
// than wait for the first. Options pkg/database sets on the pool afterwards (its size, lifetimes) apply to it alike.
//
// The wait ends with ctx, whose error Open then returns: a service told to stop while its database does not answer
// stops at once, as it did when its first statement made the connect. A connect of Start's that ran out of time
// (connect_timeout) is Open's error too: connecting again would only wait as long once more, so an unreachable
// server failed a start after twice its timeout. Any other failure (refused, a server still starting: 57P03) is
// quick, and the pool's first statement connects again and reports it if it persists.
func Open(ctx context.Context, rawURL string) (*sql.DB, error) {
	mu.Lock()
	e := started[rawURL]
	delete(started, rawURL)
	mu.Unlock()
	if e == nil {
		return newPool(rawURL)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		// The connect goes on in the background; closing the pool closes what it makes.
		_ = e.pool.Close()
		return nil, fmt.Errorf("wait for the connect begun at start-up: %w", context.Cause(ctx))
	}
	if e.err != nil && pgconn.Timeout(e.err) {
		_ = e.pool.Close()
		return nil, e.err
	}
	return e.pool, nil
}

// newPool is the pool gorm's PostgreSQL dialector would open for rawURL (it connects nothing yet), with
// ConnectTimeout where the URL sets none, and except that a connection is not pinged the first time the pool hands it
// out again. pgx pings a connection it hands out after more than a second since it last did, to find one the server
// dropped meanwhile; but it counts from the last hand-out, and a new connection has had none, so it pinged every
// connection on its first reuse however fresh: the readiness check just after a service's start cost two round
// trips, and the migration check after gorm's ping one more. Counting a new connection's idle time from its connect
// keeps pgx's rule and drops that ping. (The dialector would also take a timestamp column's scan location from a
// TimeZone parameter of the URL; pgx still sends that parameter to the server, but no Shanhai URL sets one: every
// service writes UTC, see pkg/database's NowFunc.)
func newPool(rawURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(WithConnectTimeout(rawURL))
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(markConnected), stdlib.OptionShouldPing(shouldPing)), nil
}

// connectedAt is the key under which markConnected records a connection's connect time in its pgconn CustomData.
const connectedAt = "shanhai.connected_at"

func markConnected(_ context.Context, conn *pgx.Conn) error {
	conn.PgConn().CustomData()[connectedAt] = time.Now()
	return nil
}

// shouldPing is pgx's default rule (ping a connection idle for more than a second), with a connection's connect
// counted as its last use until it has been handed out once.
func shouldPing(_ context.Context, p stdlib.ShouldPingParams) bool {
	idle := p.IdleDuration
	if at, ok := p.Conn.PgConn().CustomData()[connectedAt].(time.Time); ok {
		idle = min(idle, time.Since(at))
	}
	return idle > time.Second
}

// WithConnectTimeout adds ConnectTimeout (in pgx's connect_timeout, whole
// seconds) to a PostgreSQL URL that sets none; one that does not parse is
// left for pgx to refuse.
func WithConnectTimeout(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	if q.Has("connect_timeout") {
		return raw
	}
	q.Set("connect_timeout", strconv.Itoa(int(ConnectTimeout/time.Second)))
	u.RawQuery = q.Encode()
	return u.String()
}
