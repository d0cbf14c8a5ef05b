package main

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// A taken port stops the run before anything starts, and the message names
// the port, its part and how to move the block (-port); the ports chosen for
// the other parts stay free.
func TestStartRefusesATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	userPort, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Setenv("PULSAR_URL", "")
	p, err := Start(ctx, Options{DataDir: t.TempDir(), Ports: map[string]int{"order": takenPort, "user": userPort}})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with the order service's port taken")
	}
	want := "port already in use: port " + strconv.Itoa(takenPort) + " (order)"
	if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "stop what holds it") || !strings.Contains(msg, "-port") {
		t.Fatalf("Start error = %q, want %q, that something holds it and how to choose another block (-port)", msg, want)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(userPort)))
	if err != nil {
		t.Fatalf("the user service holds its port after the refused start: %v", err)
	}
	ln.Close()
}

// -port takes a block of ten ports; one that does not fit is refused with
// the range that does, before anything starts.
func TestPortBlock(t *testing.T) {
	httpPorts, admin, err := portBlock(8080)
	if err != nil {
		t.Fatal(err)
	}
	if httpPorts["gateway"] != 8080 || httpPorts["bridge"] != 8084 || admin["gateway"] != 9080 || admin["bridge"] != 9084 {
		t.Fatalf("portBlock(8080) = %v, %v", httpPorts, admin)
	}
	if _, _, err := portBlock(64531); err != nil {
		t.Fatalf("portBlock(64531): %v (its last pprof port is 65535)", err)
	}
	for _, port := range []int{0, -1, 64532, 70000} {
		if _, _, err := portBlock(port); err == nil || !strings.Contains(err.Error(), "choose 1-64531") {
			t.Errorf("portBlock(%d) error = %v, want it refused with the valid range", port, err)
		}
	}
}

// -native with the servers down says which do not answer and to run
// make deps-up, instead of waiting for parts that never get ready.
func TestCheckServersNamesTheDownOnes(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	downPort, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	down := "127.0.0.1:" + strconv.Itoa(downPort)
	err = checkServers(map[string]string{
		"DATABASE_URL":   "postgres://shanhai@" + up.Addr().String() + "/shanhai?sslmode=disable",
		"ETCD_ENDPOINTS": up.Addr().String(),
		"KAFKA_BROKERS":  down + "," + up.Addr().String(),
		"NATS_URL":       "nats://" + down,
	})
	if err == nil {
		t.Fatal("checkServers found every server up with Kafka and NATS down")
	}
	msg := err.Error()
	for _, want := range []string{"KAFKA_BROKERS (" + down + ")", "NATS_URL (" + down + ")", "make deps-up"} {
		if !strings.Contains(msg, want) {
			t.Errorf("checkServers error = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "DATABASE_URL") || strings.Contains(msg, "ETCD_ENDPOINTS") {
		t.Errorf("checkServers error = %q names a server that answers", msg)
	}
}

// -native started outside the repository (or with a wrong -root) finds no
// scripts/deps.sh: the message says so and how to point at it, rather than
// to start the servers, which may well be running.
func TestNativeNamesAMissingDepsScript(t *testing.T) {
	root := t.TempDir()
	_, err := NativeServers(context.Background(), root)
	if err == nil {
		t.Fatal("NativeServers succeeded without scripts/deps.sh")
	}
	msg := err.Error()
	for _, want := range []string{filepath.Join(root, "scripts", "deps.sh"), "-root"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NativeServers error = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "make deps-up") {
		t.Errorf("NativeServers error = %q sends the reader to start servers", msg)
	}
}

// A part that ends by itself is named with how it ended; a clean exit (a
// child stopped with kill) reads as such, not as "stopped: <nil>".
func TestAnyExitNamesThePartAndHowItEnded(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "payment exited on its own (log: logs/payment.log)"},
		{errors.New("exit status 2"), "payment stopped: exit status 2 (log: logs/payment.log)"},
	} {
		part := &Part{Name: "payment", done: make(chan error, 1)}
		part.done <- tc.err
		got := <-anyExit(&Platform{Parts: map[string]*Part{"payment": part}, LogDir: "logs"})
		if got.Error() != tc.want {
			t.Errorf("anyExit = %q, want %q", got, tc.want)
		}
	}
}

// A run can start again right after the last one failed: the gateway binds
// without SO_REUSEADDR, so a connection it closed itself (this program's
// readiness poll, kept alive) would leave its port in TIME_WAIT and refuse
// the next start for a minute.
func TestPortsFreeRightAfterAFailedStart(t *testing.T) {
	free, err := freeport.Ports(len(Names))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{}
	for i, name := range Names {
		ports[name] = free[i]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Setenv("PULSAR_URL", "")
	t.Setenv("DATABASE_MAX_CONNS", "many") // order and payment refuse to start; the gateway comes up
	p, err := Start(ctx, Options{DataDir: t.TempDir(), Ports: ports})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with DATABASE_MAX_CONNS=many")
	}
	if err := checkPorts(ports, nil); err != nil {
		t.Fatalf("after the failed start: %v", err)
	}
}
