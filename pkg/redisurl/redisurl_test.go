package redisurl

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseBoundsWhatTheURLLeavesUnset(t *testing.T) {
	opt, err := Parse("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	if opt.DialTimeout != Timeout || opt.ReadTimeout != Timeout || opt.WriteTimeout != Timeout || opt.MaxRetries != -1 {
		t.Fatalf("dial %v read %v write %v retries %d; want %v each and no retries",
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries, Timeout)
	}
}

func TestParseKeepsWhatTheURLSets(t *testing.T) {
	opt, err := Parse("redis://127.0.0.1:6379/0?dial_timeout=1s&read_timeout=3s&write_timeout=2s&max_retries=5")
	if err != nil {
		t.Fatal(err)
	}
	if opt.DialTimeout != time.Second || opt.ReadTimeout != 3*time.Second || opt.WriteTimeout != 2*time.Second || opt.MaxRetries != 5 {
		t.Fatalf("dial %v read %v write %v retries %d; want the URL's 1s, 3s, 2s, 5",
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries)
	}
}

func TestParseRefusesABadURL(t *testing.T) {
	if _, err := Parse("http://127.0.0.1:6379"); err == nil {
		t.Fatal("an http:// URL was accepted")
	}
}

// REDIS_URL's error is logged and printed at start: it must not carry the
// password, even when the password is what made the URL unparseable (an
// unencoded % is common in generated passwords).
func TestParseErrorHidesThePassword(t *testing.T) {
	for _, raw := range []string{
		"redis://:s3cr%zzet@127.0.0.1:6379/0",
		"redis://user:s3cr%zzet@127.0.0.1:6379/0",
		"redis://:s3cr:et@127.0.0.1:x/0",
		// A '/' or '?' left unencoded in a password after digits: url.Parse
		// reads the digits as the port and the rest as the path or query,
		// which go-redis's error quotes.
		"redis://:1234/s3cret@127.0.0.1:6379/0",
		"redis://:1234/s3cret@127.0.0.1",
		"redis://:1234?s3cret@127.0.0.1:6379",
	} {
		_, err := Parse(raw)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("%s: error shows the password: %v", raw, err)
		}
	}
}

// A '#' left unencoded in a password starts a URL fragment: url.Parse then
// reads part of the password as the host and go-redis dialled "ss:6379" with
// the password "p". A Redis URL has no fragment, so one is refused.
func TestParseRefusesAFragment(t *testing.T) {
	for _, raw := range []string{"redis://:p@ss#word@127.0.0.1/0", "redis://127.0.0.1:6379/0#x"} {
		opt, err := Parse(raw)
		if err == nil {
			t.Errorf("%s: accepted as %s with password %q", raw, opt.Addr, opt.Password)
			continue
		}
		if strings.Contains(err.Error(), "ss#word") {
			t.Errorf("%s: error shows the password: %v", raw, err)
		}
	}
	if opt, err := Parse("redis://:p%40ss%23word@127.0.0.1/0"); err != nil || opt.Password != "p@ss#word" || opt.Addr != "127.0.0.1:6379" {
		t.Errorf("percent-encoded password: %v, %+v", err, opt)
	}
}

// go-redis selects a database only when the number is above 0, so a negative
// one silently shared database 0 with whatever else uses it.
func TestParseRefusesANegativeDatabase(t *testing.T) {
	for _, raw := range []string{"redis://127.0.0.1:6379/-1", "redis://127.0.0.1:6379?db=-3"} {
		if opt, err := Parse(raw); err == nil {
			t.Errorf("%s: accepted with database %d", raw, opt.DB)
		}
	}
	if opt, err := Parse("redis://127.0.0.1:6379/15"); err != nil || opt.DB != 15 {
		t.Errorf("database 15: %v, %+v", err, opt)
	}
}

// Hiding the password must not hide the mistake: a bad port in a URL with a
// password is named as such, not blamed on the password.
func TestParseErrorNamesAMistakeOutsideThePassword(t *testing.T) {
	_, err := Parse("redis://:s3cret@127.0.0.1:63x79/0")
	if err == nil || !strings.Contains(err.Error(), "port") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad port: %v", err)
	}
	// A '/' in the password ends the host there, so url.Parse quotes part of
	// the password as the port: that stays hidden.
	_, err = Parse("redis://:s3/cret@127.0.0.1:6379/0")
	if err == nil || strings.Contains(err.Error(), "s3") {
		t.Fatalf("password with a '/': %v", err)
	}
}

// go-redis lets ?db= override the path's database, and the last of several
// ?db= win, without a word: redis://host/1?db=2 used database 2. A URL
// naming two different databases is refused; one number named twice is not
// a conflict.
func TestParseRefusesTwoDatabases(t *testing.T) {
	for _, raw := range []string{
		"redis://127.0.0.1:6379/1?db=2",
		"redis://127.0.0.1:6379/0?db=3",
		"redis://127.0.0.1:6379?db=1&db=2",
		"rediss://127.0.0.1:6379/4?db=5",
	} {
		if opt, err := Parse(raw); err == nil || !strings.Contains(err.Error(), "names database") {
			t.Errorf("%s: %v (database %d), want an error naming both databases", raw, err, dbOf(opt))
		}
	}
	for raw, want := range map[string]int{
		"redis://127.0.0.1:6379/2?db=2":       2,
		"redis://127.0.0.1:6379?db=3":         3,
		"redis://127.0.0.1:6379/?db=3":        3,
		"redis://127.0.0.1:6379/5":            5,
		"unix:///run/redis/redis.sock?db=6":   6,
		"redis://127.0.0.1:6379/7?db=":        7,
		"redis://127.0.0.1:6379/1?db=1&db=01": 1,
	} {
		if opt, err := Parse(raw); err != nil || opt.DB != want {
			t.Errorf("%s: %v (database %d), want database %d", raw, err, dbOf(opt), want)
		}
	}
}

// Redis numbers databases with a 32-bit int: SELECT 2147483648 is refused,
// so a URL naming it passed the start and then failed every command. It is
// refused at the start, as a negative one is.
func TestParseRefusesADatabaseOutOfRange(t *testing.T) {
	for _, raw := range []string{
		"redis://127.0.0.1:6379/2147483648",
		"redis://127.0.0.1:6379?db=2147483648",
		"redis://127.0.0.1:6379/9223372036854775807",
	} {
		if opt, err := Parse(raw); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("%s: %v (database %d), want an out of range error", raw, err, dbOf(opt))
		}
	}
	if opt, err := Parse("redis://127.0.0.1:6379/2147483647"); err != nil || opt.DB != 2147483647 {
		t.Errorf("database 2147483647: %v, %+v", err, opt)
	}
}

func dbOf(opt *redis.Options) int {
	if opt == nil {
		return -1
	}
	return opt.DB
}
