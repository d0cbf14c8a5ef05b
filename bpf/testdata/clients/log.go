package main

import (
	"io"

	"github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/sirupsen/logrus"
)

// quietLogger keeps the Pulsar client's logging off stdout, which carries the counts.
func quietLogger() log.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return log.NewLoggerWithLogrus(l)
}
