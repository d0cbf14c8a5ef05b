package main

import "syscall"

// childAttr puts a child part in its own process group: a Ctrl-C in the
// terminal reaches only this program, which then stops the children in
// order instead of all at once. Its own group also keeps it from the
// terminal's second Ctrl-C, which ends this program at once: Pdeathsig then
// kills the child instead of leaving it running, serving its port, with no
// parent to stop it (also when this program is killed). Go ends an OS
// thread, which Pdeathsig watches, only for a goroutine that exits locked to
// it; none here does.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
