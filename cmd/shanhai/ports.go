package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ephemeralRange is the kernel's range of local ports for outgoing
// connections (Linux: net.ipv4.ip_local_port_range); ok is false where it
// cannot be read.
func ephemeralRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, errLo := strconv.Atoi(f[0])
	hi, errHi := strconv.Atoi(f[1])
	return lo, hi, errLo == nil && errHi == nil && lo <= hi
}

// outsideEphemeral refuses a -port block (port to port+4 for HTTP, port+1000
// to port+1004 for pprof) with a port in the ephemeral range lo-hi. Every
// connection the machine opens takes its local port from that range, so such
// a port is free when checkPorts looks and a client's a moment later, or
// held for a minute by one in TIME_WAIT: on a shared machine (load 10-15)
// 21 of 25 starts at -port 47080 stopped on 48084, the local port of another
// process's connection to PostgreSQL, while 20 of 20 at -port 23180 started.
// A range that leaves no block below it (some containers use 1024-65535)
// is not held against any port: there would be nothing better to choose.
func outsideEphemeral(port, lo, hi int) error {
	const lowest = 1024 // below it the block would need privileges
	suggest := min(28080, lo-1005)
	if suggest < lowest {
		return nil
	}
	overlaps := func(first int) bool { return first <= hi && first+4 >= lo }
	if !overlaps(port) && !overlaps(port+1000) {
		return nil
	}
	return fmt.Errorf("-port %d: its ports %d-%d and %d-%d are in this machine's ephemeral range %d-%d "+
		"(net.ipv4.ip_local_port_range), from which every outgoing connection takes its local port, so any "+
		"of them can be taken by another program's connection while the run starts; choose a block below it, "+
		"e.g. -port %d", port, port, port+4, port+1000, port+1004, lo, hi, suggest)
}
