// Package freeport picks unused loopback TCP ports for servers a program or a
// test starts on its own, when their addresses must be known beforehand (a
// child process's HTTP_ADDR, a peer's URL). Where a listener can be handed
// over, listen on port 0 instead: that has no race at all.
package freeport

import (
	"fmt"
	"net"
)

// Ports returns n distinct ports nothing listens on now. Every listener stays
// open until the last is chosen, because the kernel may hand a port closed a
// moment ago out again: picked one at a time, two parts of one run were given
// the same port and one could not start. Another process may still take a
// port before its server binds it; the bind error then names the port.
func Ports(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Port returns one port nothing listens on now, for a run that needs a
// single one; a run that needs several must ask Ports for all of them at once.
func Port() (int, error) {
	ports, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Addrs is Ports as "127.0.0.1:port" addresses.
func Addrs(n int) ([]string, error) {
	ports, err := Ports(n)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, n)
	for i, p := range ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	return addrs, nil
}
