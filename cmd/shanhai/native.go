package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// NativeServers runs `scripts/deps.sh env` and returns the connection
// variables it prints (lines `export NAME='value'`). deps.sh is the one
// source of the servers' addresses, so -native never hard-codes a port.
//
// ctx ends the script with the run (Ctrl-C during the start-up).
func NativeServers(ctx context.Context, root string) (map[string]string, error) {
	script := filepath.Join(root, "scripts", "deps.sh")
	// Started outside the repository, the run finds no script: that, not the
	// servers, is what to fix (deps.sh env prints whether or not they run).
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("-native reads the servers' addresses from %s: %w; run from the repository root "+
			"(as make run does) or give -root", script, err)
	}
	cmd := exec.CommandContext(ctx, script, "env")
	cmd.WaitDelay = time.Second // a child the script left holding its output does not hold the run
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s env: %w", script, err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[name] = strings.Trim(value, `'"`)
	}
	if env["KAFKA_BROKERS"] == "" || env["DATABASE_URL"] == "" {
		return nil, fmt.Errorf("scripts/deps.sh env printed no KAFKA_BROKERS or DATABASE_URL: are the servers up (make deps-up)?")
	}
	if err := checkServers(env); err != nil {
		return nil, fmt.Errorf("-native: %w", err)
	}
	return env, nil
}

// checkServers dials each server env names. deps.sh env prints the
// addresses whether or not anything listens there, and a part whose server
// is down retries and never gets ready, so without this the run would wait
// for it instead of saying what to do. A URL that cannot be read as written
// (one url.Parse refuses, or whose password has an unencoded #, /, ? or @)
// is refused as such, undialled: its server may well be up.
func checkServers(env map[string]string) error {
	var down, misread []string
	for _, name := range []string{"DATABASE_URL", "REDIS_URL", "ETCD_ENDPOINTS", "NATS_URL", "KAFKA_BROKERS", "PULSAR_URL", "PULSAR_ADMIN_URL"} {
		v := env[name]
		if v == "" {
			continue
		}
		addr, _, _ := strings.Cut(v, ",") // ETCD_ENDPOINTS and KAFKA_BROKERS are lists
		if u, ok := parseWhole(addr); ok {
			addr = u.Host
		} else if _, err := url.Parse(addr); strings.Contains(addr, "://") && (err != nil || strings.Contains(addr, "@")) {
			// A URL that does not parse, or whose password has an
			// unencoded #, /, ? or @: no dial can say anything about its
			// server, and "nothing answers" sent its user to servers that
			// were up. The URL is what to fix.
			misread = append(misread, fmt.Sprintf("%s (%s)", name, redact.URL(addr)))
			continue
		} else {
			addr = redact.URL(addr) // a host:port list, or user info with no scheme: named in the refusal below
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			down = append(down, fmt.Sprintf("%s (%s)", name, addr))
			continue
		}
		_ = c.Close()
	}
	var errs []error
	if len(misread) > 0 {
		errs = append(errs, fmt.Errorf("%s: not a URL its clients read as written (is a %%, #, /, ?, @ or : in its user "+
			"name or password not percent-encoded?)", strings.Join(misread, ", ")))
	}
	if len(down) > 0 {
		errs = append(errs, fmt.Errorf("nothing answers at %s: start the servers with make deps-up (make deps-status shows them)",
			strings.Join(down, ", ")))
	}
	return errors.Join(errs...)
}

// ServiceDatabases creates one PostgreSQL database per service next to the
// one deps.sh made (shanhai_user, ...), as production has: the services
// share table names (outbox, users), so one database cannot hold them all.
// It returns the services' DATABASE_URLs.
//
// It gives up after postgresAnswerLimit: a PostgreSQL that takes the
// connection and never answers (wedged, or another program on its port)
// passes checkServers' dial, and the run then waited for it, silent, for good.
func ServiceDatabases(ctx context.Context, base string, services ...string) (map[string]string, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, postgresAnswerLimit)
	defer cancel()
	urls, err := serviceDatabases(ctx, base, services...)
	if err != nil && parent.Err() == nil && ctx.Err() != nil {
		host := redact.URL(base)
		if u, ok := parseWhole(base); ok {
			host = u.Host
		}
		return nil, fmt.Errorf("-native: the PostgreSQL of DATABASE_URL (%s) did not answer within %s: %w", host, postgresAnswerLimit, err)
	}
	return urls, err
}

// parseWhole parses s as a URL with a host, and reports whether that
// reading can be dialled: not when an @ is left outside its user, the mark
// of a password url.Parse cut short. An unencoded #, / or ? in a password
// ends the authority early, and what is left before it may still read as a
// host (pulsar://bob:2024#pw@pulsar parses as host bob, port 2024), which
// is part of the password, not the server. Such a URL is named through
// redact.URL instead, which keeps what follows the last @.
func parseWhole(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, false
	}
	if n := strings.Count(s, "@"); n > 1 || n == 1 && u.User == nil {
		return nil, false
	}
	return u, true
}

// misreadUserInfo reports a DATABASE_URL whose password pgx cannot read, so
// that dialling it could only fail naming part of the password: more than
// one '@' (url.Parse takes the last as the end of the user info and pgx
// another, and pgx's error names the host it read), or one in the path with
// no user info before it, where an unencoded '/' in the password ended the
// authority early. pgx then takes the password's first part for the host
// and port and the rest for the database name, which its connect error
// quotes (postgres://bob:12/pw@db/x: database "pw@db/x"). pkg/database
// refuses both the same way, so the services would refuse it later anyway.
// An unencoded '#' or '?' is left to pgx, which reads it as part of the
// password.
func misreadUserInfo(base string) bool {
	switch strings.Count(base, "@") {
	case 0:
		return false
	case 1:
		u, err := url.Parse(base)
		return err == nil && u.User == nil && strings.Contains(u.EscapedPath(), "@")
	default:
		return true
	}
}

// postgresAnswerLimit bounds ServiceDatabases: seconds above a loaded
// server's answer, far below a wait someone would sit through.
const postgresAnswerLimit = 10 * time.Second

func serviceDatabases(ctx context.Context, base string, services ...string) (map[string]string, error) {
	if misreadUserInfo(base) {
		return nil, fmt.Errorf("DATABASE_URL %s: an '@' that does not end the user info: percent-encode any "+
			"@, /, ?, # or : in the user name or password, and an @ in parameters (%%40)", redact.URL(base))
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer admin.Close()
	u, err := url.Parse(base)
	if err != nil {
		// Not err: url.Error quotes the whole URL, password included.
		return nil, fmt.Errorf("DATABASE_URL %s does not parse as a URL (is a %% or @ in the password not percent-encoded?)", redact.URL(base))
	}
	urls := map[string]string{}
	for _, s := range services {
		name := "shanhai_" + s
		var exists bool
		if err := admin.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return nil, fmt.Errorf("postgres: look up database %s: %w", name, err)
		}
		if !exists {
			if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
				return nil, fmt.Errorf("postgres: create database %s: %w", name, err)
			}
		}
		su := *u
		su.Path = "/" + name
		urls[s] = su.String()
	}
	return urls, nil
}
