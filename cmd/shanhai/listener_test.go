package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// otherProgram serves /readyz 200 on a port in a child process (this test
// binary again) until the test ends, and returns the port and its pid: a
// part of another run started on the same -port.
func otherProgram(t *testing.T) (port, pid int) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestReadyzOfAnotherProgramIsNotThePartsOwn$")
	child.Env = append(os.Environ(), "SHANHAI_TEST_READYZ=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := child.StdinPipe() // closed at the end: the child then exits
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the other program's port: %v", err)
	}
	if port, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatalf("the other program's port %q: %v", line, err)
	}
	return port, child.Process.Pid
}

// A part whose port another program serves, one whose /readyz answers 200,
// is not ready: it failed to bind, and WaitReady says so. It returned nil on
// that 200, so two runs started at once on one -port each printed its banner
// over the other's parts and then both stopped.
func TestReadyzOfAnotherProgramIsNotThePartsOwn(t *testing.T) {
	if os.Getenv("SHANHAI_TEST_READYZ") != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		go http.Serve(ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		io.Copy(io.Discard, os.Stdin)
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("tells a port's owner from /proc, Linux only")
	}
	port, _ := otherProgram(t)
	bind := errors.New("listen tcp 127.0.0.1:" + strconv.Itoa(port) + ": bind: address already in use")
	part := &Part{Name: "user", Port: port, host: func(context.Context, map[string]string, io.Writer) error { return bind }}
	if err := part.Start(io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := part.WaitReady(ctx)
	if !errors.Is(err, errEndedEarly) || !errors.Is(err, bind) {
		t.Fatalf("WaitReady = %v, want it ended before it was ready: %v", err, bind)
	}
}

// listensOn names the process that holds a port, this one or a child.
func TestListensOn(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc, Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	own := ln.Addr().(*net.TCPAddr).Port
	other, pid := otherProgram(t)
	for _, c := range []struct {
		pid, port int
		want      bool
	}{{os.Getpid(), own, true}, {os.Getpid(), other, false}, {pid, other, true}, {pid, own, false}} {
		if yes, known := listensOn(c.pid, c.port); !known || yes != c.want {
			t.Errorf("listensOn(%d, %d) = %v, %v; want %v, true", c.pid, c.port, yes, known, c.want)
		}
	}
}
