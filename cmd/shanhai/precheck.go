package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/server"
)

// standIns take the place of the servers' connection variables while the
// parts' configurations are checked, before the servers exist (embedded:
// their ports are picked as they start; -native: deps.sh is read later).
// The run sets these variables itself, so their values are never the
// user's to get wrong; the stand-ins only have to be well formed.
func standIns(native bool) map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS":  "127.0.0.1:1",
		"NATS_URL":       "nats://127.0.0.1:1",
		"REDIS_URL":      "redis://127.0.0.1:1/0",
		"ETCD_ENDPOINTS": "127.0.0.1:1",
	}
	if native {
		env["DATABASE_URL"] = "postgres://shanhai@127.0.0.1:1/shanhai"
		env["PULSAR_URL"] = "pulsar://127.0.0.1:1"
		env["PULSAR_ADMIN_URL"] = "http://127.0.0.1:1"
	}
	return env
}

// checkConfigs loads every part's configuration as its Run does (under
// server.Part.CheckOnly, which returns before anything starts), from the
// environment the part will get, and refuses the run with one message
// naming every bad variable and the parts that refuse it. The parts used to
// find out only once the embedded servers had started (~0.2 s, files in the
// data directory), and -native had created their databases by then.
//
// The run's own variables are as the run will set them, but for the
// servers' addresses (standIns) and a port of o's that is not chosen yet.
func checkConfigs(o Options, native bool) error {
	servers := standIns(native)
	if native {
		o.DatabaseURL = func(s string) string { return servers["DATABASE_URL"] + "_" + s }
	} else {
		maps.Copy(servers, pulsarEnv(nil))
	}
	port := func(m map[string]int, name string) string {
		if m[name] == 0 {
			return "1" // picked when the parts start: not the user's to get wrong
		}
		return strconv.Itoa(m[name])
	}
	quiet := slog.New(slog.DiscardHandler)
	var lines []string
	refusers := map[string][]string{}
	for _, name := range Names {
		users, _ := strconv.Atoi(port(o.Ports, "user"))
		env := o.partEnv(name, servers, users)
		env["HTTP_ADDR"] = "127.0.0.1:" + port(o.Ports, name)
		env["ADMIN_ADDR"] = "127.0.0.1:" + port(o.Admin, name)
		err := runners[name](context.Background(), server.Part{Env: environ(env), Logger: quiet, CheckOnly: true})
		var invalid *config.Error
		switch {
		case errors.Is(err, server.ErrConfigChecked):
			continue
		case !errors.As(err, &invalid):
			return fmt.Errorf("%s: checking its configuration: %w", name, err)
		}
		for _, v := range invalid.Vars {
			line := v.Error()
			if refusers[line] == nil {
				lines = append(lines, line)
			}
			refusers[line] = append(refusers[line], name)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	slices.Sort(lines) // by variable, as pkg/config lists them
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem%s), nothing was started:", len(lines), plural(len(lines)))
	for _, line := range lines {
		fmt.Fprintf(&b, "\n  %s [%s]", line, strings.Join(refusers[line], ", "))
	}
	return errors.New(b.String())
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
