package testenv_test

import (
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A relay whose dial to its server was still under way when the test ended finished opening that connection after
// its cleanup had closed the ones it knew: the two copies on it waited for ever, and so did the cleanup, which waits
// for them (the test hung). A connection opened after the test ended is closed at once.
func TestSilencingProxyCleanupOutlastsADialUnderWay(t *testing.T) {
	target := fullListener(t)
	var (
		mu       sync.Mutex
		accepted []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			_ = c.Close()
		}
	})
	var client net.Conn
	err := testenv.Within(t, 60*time.Second, "the proxy's cleanup", func() error {
		t.Run("proxy", func(t *testing.T) {
			p := testenv.SilencingProxy(t, target.Addr().String())
			c, err := net.Dial("tcp", p.Addr()) // its relay dials target, which drops the SYN: the dial waits
			if err != nil {
				t.Fatal(err)
			}
			client = c // open past the proxy's cleanup, as a client the test closes later
			// Registered after the proxy's, so it runs first: once the proxy's listener is closed (its cleanup has
			// begun), target takes connections again, and the relay's dial completes on its next SYN, a second or
			// more later, after the cleanup has closed every connection it knew.
			t.Cleanup(func() {
				go func() {
					for {
						c, err := net.Dial("tcp", p.Addr())
						if err != nil {
							break
						}
						_ = c.Close()
						time.Sleep(time.Millisecond) // polled: the listener closes when the cleanup runs
					}
					for {
						c, err := target.Accept()
						if err != nil {
							return
						}
						mu.Lock()
						accepted = append(accepted, c)
						mu.Unlock()
					}
				}()
			})
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
}

// fullListener listens on a loopback port with a backlog of none and one connection waiting in it, never
// accepted: the kernel drops every later SYN until it is, and a dial to it waits, sending its SYN again after one
// second, then three, then seven.
func fullListener(t *testing.T) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "full listener")
	defer f.Close() // FileListener holds a dup of it
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	// Fill the queue: dial until a dial is not answered.
	for range 4 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
		if err != nil {
			return ln
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatal("the listener's queue never filled")
	return nil
}
