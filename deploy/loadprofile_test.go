package deploy

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// liftable are the client limits compose takes from its environment, so a load run can lift them (deploy/README.md);
// without the variable each must be the binary's own default, which is what keeps them on for the normal stack.
var liftable = map[string][]string{
	"gateway": {"GATEWAY_IP_LIMIT", "GATEWAY_LOGIN_LIMIT", "GATEWAY_USER_LIMIT"},
	"user":    {"LOGIN_IP_ATTEMPTS", "LOGIN_ACCOUNT_ATTEMPTS", "SIGNUP_IP_ATTEMPTS"},
}

func binary(t *testing.T, name string) Binary {
	t.Helper()
	for _, b := range Binaries {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("%s is not a platform binary", name)
	return Binary{}
}

func TestComposeLimitsAreTheDefaultsUnlessLifted(t *testing.T) {
	var lifted []string
	for _, vars := range liftable {
		for _, v := range vars {
			lifted = append(lifted, v+"=12345") // a value no default has
		}
	}
	// Empty counts as unset: an empty GATEWAY_*_LIMIT would switch that limit off.
	for _, env := range [][]string{nil, {"GATEWAY_IP_LIMIT=", "LOGIN_IP_ATTEMPTS="}} {
		p := loadComposeWithEnv(t, env)
		for name, vars := range liftable {
			defaults, _ := configVars(t, binary(t, name))
			for _, v := range vars {
				got, set := p.Services[name].Environment[v]
				if !set || got == nil || *got != defaults[v] || defaults[v] == "" {
					t.Errorf("%s: %s with %q in the environment is %q, want the binary's default %q", name, v, env, value(got), defaults[v])
				}
			}
		}
	}
	p := loadComposeWithEnv(t, lifted)
	for name, vars := range liftable {
		for _, v := range vars {
			if got := p.Services[name].Environment[v]; got == nil || *got != "12345" {
				t.Errorf("%s: %s is %q with %s=12345 in the environment: lifting it for a load run does not reach the service", name, v, value(got), v)
			}
		}
	}
}

// value is a compose environment value for a message ("" when unset or null).
func value(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}

// rate reads the gateway's count/period[:burst] (gateway/internal/config.Rate) as requests per second and burst.
func rate(t *testing.T, s string) (perSec float64, burst int) {
	t.Helper()
	spec, b, _ := strings.Cut(s, ":")
	count, period, _ := strings.Cut(spec, "/")
	n, err1 := strconv.Atoi(count)
	d, err2 := time.ParseDuration(period)
	burst, err3 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || err3 != nil || d <= 0 {
		t.Fatalf("rate %q is not count/period:burst", s)
	}
	return float64(n) / d.Seconds(), burst
}

// The load profile as shipped must run against the default limits: every request comes from the loadgen's one
// address. The mix is e2e/cmd/loadgen's: per order one browse, one order and one poll, plus -login-ratio log ins.
func TestComposeLoadProfileFitsTheDefaultLimits(t *testing.T) {
	p := loadCompose(t, "load")
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	orders := fs.Float64("rate", 50, "")
	loginRatio := fs.Float64("login-ratio", 0.02, "")
	users := fs.Int("users", 20, "")
	fs.String("target", "", "")
	fs.Duration("duration", 0, "")
	if err := fs.Parse(p.Services["loadgen"].Command); err != nil {
		t.Fatalf("loadgen command %v: %v (a flag this test does not know: add it)", p.Services["loadgen"].Command, err)
	}
	us, _ := configVars(t, binary(t, "user"))
	ipRate, _ := rate(t, *p.Services["gateway"].Environment["GATEWAY_IP_LIMIT"])
	loginRate, loginBurst := rate(t, *p.Services["gateway"].Environment["GATEWAY_LOGIN_LIMIT"])
	userRate, _ := rate(t, *p.Services["gateway"].Environment["GATEWAY_USER_LIMIT"])
	ipAttempts, err1 := strconv.Atoi(*p.Services["user"].Environment["LOGIN_IP_ATTEMPTS"])
	window, err2 := time.ParseDuration(us["LOGIN_WINDOW"])
	if err1 != nil || err2 != nil || window <= 0 {
		t.Fatalf("the user service's login guard: LOGIN_IP_ATTEMPTS %v, LOGIN_WINDOW %q %v", err1, us["LOGIN_WINDOW"], err2)
	}

	logins := *orders * *loginRatio // per second, during the run
	if sent := 3**orders + logins; sent > ipRate {
		t.Errorf("the load profile sends %.1f requests/s from one address, over the gateway's %.0f/s per address", sent, ipRate)
	}
	if per := 3 * *orders / float64(*users); per > userRate {
		t.Errorf("the load profile sends %.1f requests/s per user, over the gateway's %.0f/s per user", per, userRate)
	}
	// Setup's log ins must leave the run one from the burst: its first log in can be due at once, before a refill.
	if *users >= loginBurst {
		t.Errorf("the load profile logs %d users in before it starts, leaving nothing of the gateway's login burst of %d for the run", *users, loginBurst)
	}
	if guard := float64(ipAttempts) / window.Seconds(); logins > loginRate || logins > guard || *users > ipAttempts {
		t.Errorf("the load profile logs in %.3f/s (after %d at setup), over the gateway's %.3f/s or the user service's %.3f/s (burst %d) per address",
			logins, *users, loginRate, guard, ipAttempts)
	}
	// Setup signs every user up from the loadgen's one address, within the user service's own sign-up guard.
	signups, err := strconv.Atoi(*p.Services["user"].Environment["SIGNUP_IP_ATTEMPTS"])
	if err != nil {
		t.Fatalf("SIGNUP_IP_ATTEMPTS: %v", err)
	}
	if *users > signups {
		t.Errorf("the load profile signs %d users up from one address, over the user service's %d sign-ups per address", *users, signups)
	}
	// Log ins pick their user at random, so an account's share of a window varies: its mean stays at half the user
	// service's per-account quota, which a window rarely doubles.
	accountAttempts, err := strconv.Atoi(*p.Services["user"].Environment["LOGIN_ACCOUNT_ATTEMPTS"])
	if err != nil {
		t.Fatalf("LOGIN_ACCOUNT_ATTEMPTS: %v", err)
	}
	if perAccount := logins / float64(*users) * window.Seconds(); perAccount > float64(accountAttempts)/2 {
		t.Errorf("the load profile logs each account in %.2f times per %v on average, over half the user service's %d per account",
			perAccount, window, accountAttempts)
	}
}
