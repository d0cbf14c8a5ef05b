package discovery

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// cutProxy forwards TCP connections to target until cut, which drops every
// connection and refuses new ones until restore: a network partition between
// one client and etcd, while other clients still reach it.
type cutProxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cuts  bool
	conns map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: target, ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.cuts {
		p.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
	_, _ = io.Copy(c, u)
	_ = c.Close()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts = false
}

// TestResolverRelistsAfterEtcdRestartedWithItsRevisionCompacted: the
// resolver is cut off from etcd; meanwhile an instance goes, another comes,
// etcd compacts past the resolver's revision and restarts. When the resolver
// reaches etcd again its watch cannot resume (ErrCompacted): it lists afresh
// and keeps watching.
func TestResolverRelistsAfterEtcdRestartedWithItsRevisionCompacted(t *testing.T) {
	ctx := t.Context()
	e := testenv.StartEtcd(t)
	p := newCutProxy(t, e.Endpoint())
	res, err := newEtcdResolver(ctx, etcdClient(t, []string{p.addr()}), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writer := etcdClient(t, []string{e.Endpoint()})
	if _, err := writer.Put(ctx, Prefix+"order/a", `{"addr":"10.0.0.1:8082"}`); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances("order")) == 1 }); !ok {
		t.Fatal("resolver never saw instance a")
	}

	p.cut()
	if _, err := writer.Delete(ctx, Prefix+"order/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Put(ctx, Prefix+"order/b", `{"addr":"10.0.0.2:8082"}`); err != nil {
		t.Fatal(err)
	}
	put, err := writer.Put(ctx, "/unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Compact(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	e.Start()
	p.restore()

	only := func(id, addr string) func() bool {
		return func() bool {
			got := res.Instances("order")
			return len(got) == 1 && got[0].ID == id && got[0].Addr == addr
		}
	}
	if _, ok := eventually(30*time.Second, only("b", "10.0.0.2:8082")); !ok {
		t.Fatalf("after the compaction and restart the resolver holds %+v, want only b", res.Instances("order"))
	}
	// And it watches again from the listed revision.
	again := etcdClient(t, []string{e.Endpoint()})
	if _, err := again.Put(ctx, Prefix+"order/b", `{"addr":"10.0.0.3:8082"}`); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(10*time.Second, only("b", "10.0.0.3:8082")); !ok {
		t.Fatalf("after re-listing the resolver missed a change: %+v", res.Instances("order"))
	}
}

// TestResolverRelistsAfterEtcdRestartedEmpty: etcd comes back without its
// data (a member replaced, a volume lost) and its revision starts over below
// the one the resolver watches from. etcd holds such a watch until the
// revision catches up and sends nothing meanwhile. Written past that
// revision before the resolver looks (within one RevisionProbe), the new
// etcd never reads lower than a revision seen, and comes back with the same
// cluster and member IDs (same configuration): the watch resumed on it from
// the old revision, the writes below it never seen, and the resolver kept
// instance a, which the new etcd does not hold, for good.
func TestResolverRelistsAfterEtcdRestartedEmpty(t *testing.T) {
	for _, refilled := range []bool{false, true} {
		t.Run(map[bool]string{false: "below the old revision", true: "written past the old revision"}[refilled],
			func(t *testing.T) { relistAcrossAWipe(t, refilled) })
	}
}

func relistAcrossAWipe(t *testing.T, refilled bool) {
	ctx := t.Context()
	e := testenv.StartEtcd(t)
	p := newCutProxy(t, e.Endpoint())
	res, err := newEtcdResolver(ctx, etcdClient(t, []string{p.addr()}), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writer := etcdClient(t, []string{e.Endpoint()})
	for range 50 { // a revision the new etcd will not reach during the test
		if _, err := writer.Put(ctx, "/unrelated", "x"); err != nil {
			t.Fatal(err)
		}
	}
	put, err := writer.Put(ctx, Prefix+"order/a", `{"addr":"10.0.0.1:8082"}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances("order")) == 1 }); !ok {
		t.Fatal("resolver never saw instance a")
	}

	p.cut()
	e.Stop()
	e.Wipe()
	e.Start()
	fresh := etcdClient(t, []string{e.Endpoint()})
	if _, err := fresh.Put(ctx, Prefix+"order/b", `{"addr":"10.0.0.2:8082"}`); err != nil {
		t.Fatal(err)
	}
	for rev := int64(0); refilled && rev <= put.Header.Revision+5; {
		resp, err := fresh.Put(ctx, "/unrelated", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	p.restore()

	if _, ok := eventually(30*time.Second, func() bool {
		got := res.Instances("order")
		return len(got) == 1 && got[0].ID == "b"
	}); !ok {
		t.Fatalf("after etcd restarted empty the resolver holds %+v, want only b", res.Instances("order"))
	}
}
