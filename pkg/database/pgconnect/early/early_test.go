package early_test

import (
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/database/pgconnect"
	_ "github.com/shanhai-dev/shanhai/pkg/database/pgconnect/early"
)

// The mains' own tests (TestConfigDoc and the like) link the mains' imports,
// this package among them: every such test process connected to whatever
// DATABASE_URL the developer's or CI's environment named, a production
// database included, for nothing. Under go test the import does nothing.
func TestNoConnectInATestBinary(t *testing.T) {
	if os.Getenv("EARLY_TEST_CHILD") != "" {
		// pgconnect.Open waits for the connect init began, if it began one.
		pool, err := pgconnect.Open(t.Context(), os.Getenv("DATABASE_URL"))
		if err == nil {
			_ = pool.Close()
		}
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close() // a quick failure, for the child's wait to end
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoConnectInATestBinary$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EARLY_TEST_CHILD=1",
		"DATABASE_URL=postgres://u@"+ln.Addr().String()+"/db?sslmode=disable&connect_timeout=5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("a test binary importing early made %d connections to DATABASE_URL, want none", n)
	}
}
