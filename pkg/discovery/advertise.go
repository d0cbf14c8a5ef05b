package discovery

import "net"

// AdvertiseAddr is the address an instance registers for others to dial:
// configured when set (ADVERTISE_ADDR: a pod IP, a compose service name),
// otherwise loopback with the port ln actually got, which is right for every
// process on one host and for ":0" listeners in tests.
func AdvertiseAddr(configured string, ln net.Addr) string {
	if configured != "" {
		return configured
	}
	_, port, _ := net.SplitHostPort(ln.String())
	return net.JoinHostPort("127.0.0.1", port)
}
