// Command unixaccept accepts and closes connections on a Unix socket (the first argument); it prints "ready" once it
// listens.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("unix", os.Args[1])
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
