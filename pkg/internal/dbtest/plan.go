package dbtest

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"
)

// RowsRead runs query on PostgreSQL under EXPLAIN ANALYZE, in a transaction it rolls back, and returns how many rows
// its plan read from table: returned or filtered out, over every loop. Tests use it to show a statement reads the rows
// it works on, not the whole table, which timings on a shared machine cannot show.
func RowsRead(t testing.TB, db *gorm.DB, table, query string, args ...any) float64 {
	t.Helper()
	tx := db.Begin()
	defer tx.Rollback()
	var out []byte
	if err := tx.Raw("EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Row().Scan(&out); err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(out, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", out, err)
	}
	read := plans[0].Plan.rowsRead(table)
	t.Logf("%.0f rows of %s read by plan %s", read, table, out)
	return read
}

// planNode is the part of a node of EXPLAIN (ANALYZE, FORMAT JSON) that says how many rows it read.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// rowsRead sums, over n and the nodes below it that scan table, the rows they returned and filtered out.
func (n planNode) rowsRead(table string) float64 {
	var read float64
	if n.Relation == table && n.Plans == nil {
		read = (n.Rows + n.Removed) * n.Loops // both are per loop
	}
	for _, c := range n.Plans {
		read += c.rowsRead(table)
	}
	return read
}

// RowsPerStatement records, from now on, how many rows each raw statement of db that starts with prefix affected, and
// returns a function that reads the record in order. Tests use it to show a delete goes in batches.
func RowsPerStatement(t testing.TB, db *gorm.DB, prefix string) func() []int64 {
	t.Helper()
	var mu sync.Mutex
	var rows []int64
	err := db.Callback().Raw().After("gorm:raw").Register("dbtest:rows_per_statement", func(tx *gorm.DB) {
		if strings.HasPrefix(tx.Statement.SQL.String(), prefix) {
			mu.Lock()
			rows = append(rows, tx.RowsAffected)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(rows)
	}
}
