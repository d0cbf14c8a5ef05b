package server

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
)

// pingConnector is a database/sql connector whose connections answer a
// ping with err.
type pingConnector struct{ err error }

func (c pingConnector) Connect(context.Context) (driver.Conn, error) { return pingConn(c), nil }
func (c pingConnector) Driver() driver.Driver                        { return nil }

type pingConn struct{ err error }

func (c pingConn) Ping(context.Context) error        { return c.err }
func (pingConn) Prepare(string) (driver.Stmt, error) { return nil, errors.ErrUnsupported }
func (pingConn) Close() error                        { return nil }
func (pingConn) Begin() (driver.Tx, error)           { return nil, errors.ErrUnsupported }

// TestDatabaseCheckPingsThePool: the check is named "database" and fails
// with the pool's own failure or the ping's, and passes when the ping does.
func TestDatabaseCheckPingsThePool(t *testing.T) {
	down := errors.New("connection refused")
	noPool := errors.New("gorm: no pool")
	for _, tc := range []struct {
		name string
		pool func() (*sql.DB, error)
		want error
	}{
		{"ping answers", func() (*sql.DB, error) { return sql.OpenDB(pingConnector{}), nil }, nil},
		{"ping fails", func() (*sql.DB, error) { return sql.OpenDB(pingConnector{down}), nil }, down},
		{"no pool", func() (*sql.DB, error) { return nil, noPool }, noPool},
	} {
		c := DatabaseCheck(tc.pool)
		if err := c.Probe(t.Context()); c.Name != "database" || !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: check %q = %v, want %v", tc.name, c.Name, err, tc.want)
		}
	}
}
