package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullStub is a pull the test ends by hand.
type pullStub struct {
	jetstream.ConsumeContext
	done chan struct{}
}

func newPullStub() *pullStub { return &pullStub{done: make(chan struct{})} }

func (p *pullStub) Closed() <-chan struct{} { return p.done }
func (p *pullStub) Drain()                  { close(p.done) }

// TestStoppedPullIsReportedWithItsOwnError: the stopped pull was logged
// with whatever the client last reported of any pull, and a pull drained
// earlier (paused while the workers were stuck) may report after the
// current one, so the log named a missed heartbeat of the old pull where
// the current one had ended with Consumer Deleted.
func TestStoppedPullIsReportedWithItsOwnError(t *testing.T) {
	old, cur := newPullStub(), newPullStub()
	p := &puller{cur: cur, stopped: []jetstream.ConsumeContext{old}}
	p.noteErr(cur, jetstream.ErrConsumerDeleted)
	close(cur.done)
	p.noteErr(old, jetstream.ErrNoHeartbeat)

	stopped, err := p.stoppedItself()
	if !stopped {
		t.Fatal("a closed pull was not taken as stopped")
	}
	if !errors.Is(err, jetstream.ErrConsumerDeleted) {
		t.Errorf("the stopped pull is reported with %v, want its own %v", err, jetstream.ErrConsumerDeleted)
	}
}

// TestRefusedPullIsStoppedAndRepaired: a pull the server refused (a status
// nats.go has no error for, the pull kept) is refused on every request;
// it is taken as stopped at the first refusal, the consumer's config to be
// put back, while a missed heartbeat is outlived as before.
func TestRefusedPullIsStoppedAndRepaired(t *testing.T) {
	ensure := func(context.Context, bool) (jetstream.Consumer, error) { return nil, nil }
	cur := newPullStub()
	p := &puller{cur: cur, ensure: ensure}
	for _, err := range []error{jetstream.ErrNoHeartbeat, nats.ErrTimeout, jetstream.ErrConsumerLeadershipChanged} {
		p.noteErr(cur, err)
		if stopped, _ := p.stoppedItself(); stopped {
			t.Fatalf("a pull that reported %v was taken as stopped", err)
		}
	}
	refusal := errors.New("nats: Exceeded MaxRequestBatch of 10")
	p.noteErr(cur, refusal)
	stopped, err := p.stoppedItself()
	if !stopped || !errors.Is(err, refusal) {
		t.Fatalf("stoppedItself() = %v, %v after a refusal; want true, the refusal", stopped, err)
	}
	if !p.repair || !p.broken || !p.paused() {
		t.Errorf("after a refusal repair=%v broken=%v paused=%v, want all true", p.repair, p.broken, p.paused())
	}
	if p.due(p.retryAt.Add(-1)) {
		t.Error("a refused pull is restarted at once, not on the back-off")
	}
}

// TestNetworkErrorOfAPullIsOutlived: nats.go reports a pull request whose
// write failed on a broken or blocked connection (NATS restarting) and
// pulls again once reconnected. Every error not on the transient list was
// a refusal, so such a pull was drained and the consumer's config put
// back, failing while NATS was down and leaving the replica on a grown
// back-off after NATS was back.
func TestNetworkErrorOfAPullIsOutlived(t *testing.T) {
	ensure := func(context.Context, bool) (jetstream.Consumer, error) { return nil, nil }
	cur := newPullStub()
	p := &puller{cur: cur, ensure: ensure}
	for _, err := range []error{
		&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)},
		&net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded},
		fmt.Errorf("write: %w", net.ErrClosed),
		io.EOF,
	} {
		p.noteErr(cur, err)
		if stopped, _ := p.stoppedItself(); stopped {
			t.Fatalf("a pull that reported %v was taken as stopped (repair_config=%v)", err, p.repair)
		}
	}
}

// consumerStub hands out pulls the test ends by hand.
type consumerStub struct {
	jetstream.Consumer
	pulls []*pullStub
}

func (c *consumerStub) Consume(jetstream.MessageHandler, ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	p := newPullStub()
	c.pulls = append(c.pulls, p)
	return p, nil
}

// TestRepairedPullStartsTheNextRefusalsBackOffAfresh: the back-off a run
// of refusals grew (up to AckWait) was kept after the repair took, so a
// refusal long after, the first of a new run, waited the longest delay
// before its repair where it should wait the first. It is dropped once
// the restarted pull has gone AckWait unrefused; one refused again at
// once (the repair changed nothing) still goes on with its back-off.
func TestRepairedPullStartsTheNextRefusalsBackOffAfresh(t *testing.T) {
	cons := &consumerStub{}
	ensure := func(context.Context, bool) (jetstream.Consumer, error) { return cons, nil }
	p := &puller{cons: cons, ensure: ensure, first: time.Second, most: 30 * time.Second}
	if _, err := p.resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	refuse := func() {
		t.Helper()
		p.noteErr(p.cur, errors.New("nats: Exceeded MaxRequestBatch of 10"))
		if stopped, _ := p.stoppedItself(); !stopped {
			t.Fatal("a refused pull was not taken as stopped")
		}
		if _, err := p.resume(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 { // each refused again at once: 1, 2, 4 ... up to 30 s
		refuse()
	}
	if p.wait != p.most {
		t.Fatalf("after a run of refusals the back-off is %v, want %v", p.wait, p.most)
	}
	if stopped, _ := p.stoppedItself(); stopped {
		t.Fatal("a pull that reported nothing was taken as stopped")
	}
	if p.wait != p.most {
		t.Errorf("a pull just restarted dropped its back-off (%v): one refused again at once would be restarted at once", p.wait)
	}
	p.since = time.Now().Add(-p.most) // it has gone AckWait unrefused
	p.stoppedItself()
	refuse()
	if p.wait != p.first {
		t.Errorf("a refusal after the repaired pull ran AckWait waits %v before its repair, want %v", p.wait, p.first)
	}
}
