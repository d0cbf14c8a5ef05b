//go:build ignore

// publish latency: kafka-go (*Writer).WriteMessages (and NATS / Pulsar publish), timed entry to every RET, errors counted.
// The programs are the generic ones in include/calls.h; the agent tells them apart by attach cookie.
#include "calls.h"
