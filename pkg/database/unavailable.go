package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// RetryAfter is the wait a client is told to leave before trying again a request that failed because the database
// was unavailable (the Retry-After of the 503 such a request gets): long enough not to hammer a server that is
// restarting or failing over, short enough that a blip of a second costs a client no more than that.
const RetryAfter = time.Second

// Unavailable reports whether err means the database could not be reached or lost the connection the statement ran
// on: an outage of a dependency, which a request should answer 503 with a Retry-After, not a bug answered 500. It
// recognises, through any wrapping (gorm's included):
//
//   - a failed connection attempt (pgconn.ConnectError: connection refused, no route, authentication to a server
//     still starting, a connect timeout);
//   - PostgreSQL's own word that it is going away or cannot take the connection: SQLSTATE class 08 (connection
//     exception), 57P01 admin_shutdown (pg_terminate_backend, a fast shutdown), 57P02 crash_shutdown,
//     57P03 cannot_connect_now (starting up, shutting down, in recovery) and 53300 too_many_connections;
//   - a connection that broke under the statement: pgconn.ErrConnClosed, driver.ErrBadConn, sql.ErrConnDone, or a
//     refused, reset, aborted or broken socket;
//   - a closed pool (database/sql's "sql: database is closed": a request still running as the shutdown hook closed it);
//   - SQLite that cannot open its file (SQLITE_CANTOPEN), fails to read or write it (SQLITE_IOERR), or stays locked
//     by another process past the busy timeout (SQLITE_BUSY).
//
// A context's end is not unavailability and is not reported here on its own: callers answer it first (deadline.Abort),
// since only they know whether the caller's deadline or their own ended the work.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var connect *pgconn.ConnectError
	var pg *pgconn.PgError
	var coded interface{ Code() int } // the SQLite driver's error; pgx's errors have no Code method
	switch {
	case errors.As(err, &connect):
		return true
	case errors.As(err, &pg):
		return strings.HasPrefix(pg.Code, "08") || pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03" ||
			pg.Code == "53300"
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, errPoolClosed):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &coded):
		switch coded.Code() & 0xff { // the primary result code of an extended one
		case 5, 10, 14: // SQLITE_BUSY, SQLITE_IOERR, SQLITE_CANTOPEN
			return true
		}
	}
	return false
}

// errPoolClosed is database/sql's unexported errDBClosed, the error of every call on a closed *sql.DB. It is not
// exported and carries no type, so it is taken once from a pool closed on purpose: errors.Is then finds it by
// identity, as it would an exported sentinel, and a change of its text cannot break the match.
var errPoolClosed = func() error {
	db := sql.OpenDB(noConnector{})
	_ = db.Close()
	return db.PingContext(context.Background())
}()

// noConnector is a driver.Connector that is never asked to connect: errPoolClosed's pool is closed first.
type noConnector struct{}

func (noConnector) Connect(context.Context) (driver.Conn, error) { return nil, driver.ErrBadConn }
func (noConnector) Driver() driver.Driver                        { return nil }
