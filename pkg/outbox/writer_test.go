package outbox_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// kafkaSockets returns the socket inodes this process holds open to port, read from its descriptors and
// /proc/self/net/tcp{,6}: a count for this process alone, whatever other processes hold to the same broker.
func kafkaSockets(t *testing.T, port int) map[string]bool {
	t.Helper()
	toPort := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Fatalf("read sockets: %v", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[0] == "sl" {
				continue
			}
			_, remPort, ok := strings.Cut(fields[2], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(remPort, 16, 16)
			// 01 is ESTABLISHED: a socket the process closed lingers in TIME_WAIT, no longer its connection.
			if err == nil && int(p) == port && fields[3] == "01" {
				toPort[fields[9]] = true
			}
		}
		_ = f.Close()
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read descriptors: %v", err)
	}
	held := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue // closed between ReadDir and Readlink
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inode = strings.TrimSuffix(inode, "]")
			if toPort[inode] {
				held[inode] = true
			}
		}
	}
	return held
}

// TestClosedWriterLeavesNoKafkaConnections: kafka-go's Writer.Close closes only a transport it made itself, so a
// writer built with its own kafka.Transport kept that transport's connections (and its metadata refresh, every
// MetadataTTL) open for the life of the process. A service closes its writer once, but every writer a test or a
// restarted wiring made stayed connected.
func TestClosedWriterLeavesNoKafkaConnections(t *testing.T) {
	bs := brokers(t)
	_, portText, err := net.SplitHostPort(bs[0])
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	topic := newTopic(t, bs)
	before := kafkaSockets(t, port)

	w := outbox.NewWriter(bs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := make([]kafka.Message, 6)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	opened := 0
	for inode := range kafkaSockets(t, port) {
		if !before[inode] {
			opened++
		}
	}
	if opened == 0 {
		t.Fatal("the writer opened no connection to Kafka that this test can see: the count below would prove nothing")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// Past one metadata refresh (NewWriter's MetadataTTL is 5 s), so a transport still running is seen using its
	// connection; a closed one has none left well before.
	var left []string
	for end := time.Now().Add(7 * time.Second); ; {
		left = left[:0]
		for inode := range kafkaSockets(t, port) {
			if !before[inode] {
				left = append(left, inode)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("the writer opened %d connections to Kafka; %d are still open after Close (socket inodes %v)",
			opened, len(left), left)
	}
}

// newWriter is NewWriter for a test: closed when the test ends, so its connections and metadata refresh (over every
// topic of the shared Kafka) do not outlive the test that made it.
func newWriter(t testing.TB, bs []string) *kafka.Writer {
	t.Helper()
	w := outbox.NewWriter(bs...)
	t.Cleanup(func() { _ = w.Close() })
	return w
}
