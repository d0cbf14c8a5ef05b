package agent

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// recountSince is the first release whose TCP socket iterator holds each socket's lock while the program runs
// ("bpf: tcp: Bpf iter batching and lock_sock", 5.15): only there is tcp.c's recount counted once against the state
// change and retransmit programs. (The iterator itself came in 5.9.)
var recountSince = [2]int{5, 15}

// unprobedRecount is recount's probe label in shanhai_bpf_system_unprobed and the log.
const unprobedRecount = "tcp_recount"

// kernelAtLeast says whether the running kernel's release is at least r (major, minor); an unreadable release is not.
func kernelAtLeast(r [2]int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	major, minor, ok := parseRelease(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > r[0] || major == r[0] && minor >= r[1])
}

// parseRelease reads the major and minor numbers of a kernel release such as "6.18.44-fc".
func parseRelease(rel string) (major, minor int, ok bool) {
	f := strings.SplitN(rel, ".", 3)
	if len(f) < 2 {
		return 0, 0, false
	}
	digits := func(s string) string { // "15-rc1" is 15
		return s[:len(s)-len(strings.TrimLeft(s, "0123456789"))]
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(f[0])
	minor, err2 = strconv.Atoi(digits(f[1]))
	return major, minor, err1 == nil && err2 == nil
}

// recountHere runs tcp.c's recount over the TCP sockets of the calling thread's network namespace (the iterator
// takes the namespace of the thread that opens it): the opens and retransmits of target sockets still open that no
// program saw are counted into the probe's maps, as the programs count them. Nothing before recountSince.
func (s *system) recountHere() error {
	if s.recount == nil {
		return nil
	}
	r, err := s.recount.Open()
	if err != nil {
		return fmt.Errorf("open the tcp socket iterator: %w", err)
	}
	defer r.Close()
	// The program writes nothing: reading to the end is what runs it over every socket.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("run the tcp socket iterator: %w", err)
	}
	return nil
}
