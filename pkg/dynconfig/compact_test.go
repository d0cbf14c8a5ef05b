package dynconfig

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A bad document still in place when a watch resumes after a compaction is
// found again by the re-read; it was reported (logged and counted) when it
// was written and is not reported again. A new bad version is.
func TestBadDocumentReportedOnceAcrossACompaction(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t)
	key := Key(fmt.Sprintf("test-compact-%d", time.Now().UnixNano()))
	other := key + "-other"
	t.Cleanup(func() {
		_, _ = cli.Delete(context.Background(), key)
		_, _ = cli.Delete(context.Background(), other)
	})
	const badDoc = `{"per_ip": -1}`
	bad, err := cli.Put(ctx, key, badDoc)
	if err != nil {
		t.Fatal(err)
	}
	// Two writes elsewhere, then a compaction past the revision after the
	// bad document: a watch resuming there meets ErrCompacted and re-reads.
	var last int64
	for i := range 2 {
		resp, err := cli.Put(ctx, other, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}

	logs := &testenv.LogBuffer{}
	count := func(sub string) int { return strings.Count(logs.String(), sub) }
	// What Watch does, except that the watch starts where one whose
	// connection dropped right after reading the bad document would resume.
	v := &Value[limits]{key: key, initial: limits{PerIP: 1}, log: slog.New(slog.NewTextHandler(logs, nil))}
	v.cur.Store(&v.initial)
	v.set(ctx, []byte(badDoc), bad.Header.Revision)
	go v.watch(ctx, cli, bad.Header.Revision+1, nil)

	waitFor(t, "the watch to resume after the compaction", func() bool { return count("dynconfig watch resumed") == 1 })
	if n := count("level=WARN msg=\"dynconfig watch interrupted\""); n != 1 {
		t.Fatalf("%d interruptions logged, want the compaction's 1", n)
	}
	if n, c := count("level=ERROR"), rejectedCount(t, key); n != 1 || c != 1 {
		t.Fatalf("bad document reported %d times, counted %d, want once each:\n%s", n, c, logs)
	}

	// A second bad version is news, and a good one is applied.
	if _, err := cli.Put(ctx, key, `{"per_ip": 0}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second bad version counted", func() bool { return rejectedCount(t, key) == 2 })
	good, err := cli.Put(ctx, key, `{"per_ip": 3}`)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good version applied", func() bool { return v.Revision() == good.Header.Revision })
	if n := count("level=ERROR"); n != 2 {
		t.Fatalf("%d errors logged for 2 bad versions", n)
	}
}
