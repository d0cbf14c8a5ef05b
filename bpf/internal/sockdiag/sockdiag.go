// Package sockdiag asks the kernel which TCP sockets are alive, through sock_diag (NETLINK_INET_DIAG): a dump of
// a network namespace's sockets and a lookup of one by its addresses. The agent uses it to find the connections
// whose close no BPF program saw (see the bpf README, "TCP state changes no program sees").
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP states (include/net/tcp_states.h) that are not a connection's full socket: a TIME_WAIT or NEW_SYN_RECV entry
// is a mini socket, and a lookup by addresses that finds no connection falls back to the listener.
const (
	stateTimeWait   = 6
	stateListen     = 10
	stateNewSynRecv = 12
)

// connStates are the states a dump asks for: every state of a full socket's connection, not the mini sockets nor
// listeners.
const connStates = ^uint32(0) &^ (1<<stateTimeWait | 1<<stateListen | 1<<stateNewSynRecv)

// timerTimeWait is the idiag_timer of a time-wait mini socket, and only of one. It is told apart by this, not its
// state: an orphaned socket that reaches FIN_WAIT2 is replaced at once by a mini socket (tcp_time_wait, its full
// socket passing CLOSE), which sock_diag reports in its substate, FIN_WAIT2, not TIME_WAIT, until tcp_fin_timeout.
const timerTimeWait = 3

// full says whether an answer of state and timer is a connection's full socket.
func full(state, timer uint8) bool {
	return timer != timerTimeWait && state != stateTimeWait && state != stateListen && state != stateNewSynRecv
}

// ID is a TCP connection's addresses as sock_diag gives them. For IPv4 only the first 4 bytes of Src and Dst are set.
type ID struct {
	Family       uint8
	Sport, Dport uint16 // host order
	Src, Dst     [16]byte
	If           uint32
}

// Sizes of struct inet_diag_sockid, inet_diag_req_v2 and inet_diag_msg (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID = 48
	sizeofReq    = 8 + sizeofSockID
	sizeofMsg    = 4 + sizeofSockID + 20
)

// Dump returns the TCP connections of family (AF_INET or AF_INET6) in the calling thread's network namespace that
// have a full socket: not yet CLOSE.
func Dump(family uint8) (map[ID]bool, error) {
	ids := map[ID]bool{}
	err := request(family, unix.NLM_F_DUMP, connStates, ID{}, func(id ID, state, timer uint8) {
		if full(state, timer) {
			ids[id] = true
		}
	})
	return ids, err
}

// Alive says whether the connection id has a full socket, looked up by its addresses: unlike a dump, which resumes
// at a position within a hash bucket and may skip a socket when another leaves the bucket meanwhile, a lookup does
// not miss a live one.
func Alive(id ID) (bool, error) {
	alive := false
	err := request(id.Family, 0, 0, id, func(got ID, state, timer uint8) { alive = full(state, timer) })
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return alive, err
}

// request sends one SOCK_DIAG_BY_FAMILY request for TCP and calls each for every socket answered, with its
// idiag_state and idiag_timer.
func request(family uint8, flags uint16, states uint32, id ID, each func(id ID, state, timer uint8)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return fmt.Errorf("open a sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	msg := make([]byte, unix.NLMSG_HDRLEN+sizeofReq)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(msg[8:], 1) // sequence
	req := msg[unix.NLMSG_HDRLEN:]
	req[0], req[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(req[4:], states)
	putID(req[8:], id)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send a sock_diag request: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("read sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("read sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("read sock_diag: short error message")
				}
				if errno := -int32(ne.Uint32(m.Data)); errno != 0 {
					return fmt.Errorf("sock_diag: %w", unix.Errno(errno))
				}
				return nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.Data) < sizeofMsg {
					return errors.New("read sock_diag: short socket message")
				}
				each(readID(m.Data), m.Data[1], m.Data[2])
			}
		}
		if flags&unix.NLM_F_DUMP == 0 {
			return nil // a lookup is answered by one message
		}
	}
}

// putID writes id as a struct inet_diag_sockid, its cookie INET_DIAG_NOCOOKIE (match by addresses alone).
func putID(b []byte, id ID) {
	binary.BigEndian.PutUint16(b[0:], id.Sport)
	binary.BigEndian.PutUint16(b[2:], id.Dport)
	copy(b[4:20], id.Src[:])
	copy(b[20:36], id.Dst[:])
	binary.NativeEndian.PutUint32(b[36:], id.If)
	binary.NativeEndian.PutUint32(b[40:], ^uint32(0))
	binary.NativeEndian.PutUint32(b[44:], ^uint32(0))
}

// readID reads the family and struct inet_diag_sockid of a struct inet_diag_msg.
func readID(m []byte) ID {
	id := ID{Family: m[0]}
	b := m[4:]
	id.Sport = binary.BigEndian.Uint16(b[0:])
	id.Dport = binary.BigEndian.Uint16(b[2:])
	copy(id.Src[:], b[4:20])
	copy(id.Dst[:], b[20:36])
	id.If = binary.NativeEndian.Uint32(b[36:])
	if id.Family == unix.AF_INET {
		clear(id.Src[4:])
		clear(id.Dst[4:])
	}
	return id
}
