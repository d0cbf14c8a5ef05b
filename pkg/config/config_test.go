package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type db struct {
	URL      string `env:"URL,required" desc:"postgres://... or sqlite://path"`
	MaxConns int    `env:"MAX_CONNS" envDefault:"10" desc:"pool size"`
}

type testConfig struct {
	Addr     string        `env:"HTTP_ADDR" envDefault:":8082" desc:"listen address"`
	Timeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	Brokers  []string      `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092" desc:"Kafka bootstrap brokers"`
	Replicas int           `env:"REPLICAS" envDefault:"1"`
	Debug    bool          `env:"DEBUG"`
	DB       db            `envPrefix:"DB_"`
}

func (c *testConfig) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, Invalid("SHUTDOWN_TIMEOUT", "must be positive"))
	}
	if c.Replicas < 1 {
		errs = append(errs, Invalid("REPLICAS", "must be at least 1"))
	}
	return errors.Join(errs...)
}

func TestLoadDefaultsAndValues(t *testing.T) {
	var c testConfig
	err := load(&c, map[string]string{"DB_URL": "sqlite://:memory:", "KAFKA_BROKERS": "a:1,b:2", "DEBUG": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8082" || c.Timeout != 10*time.Second || c.DB.MaxConns != 10 || c.Replicas != 1 {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.DB.URL != "sqlite://:memory:" || !c.Debug || len(c.Brokers) != 2 || c.Brokers[1] != "b:2" {
		t.Errorf("values not applied: %+v", c)
	}
}

func TestLoadListsEveryBadVariable(t *testing.T) {
	var c testConfig
	err := load(&c, map[string]string{
		"SHUTDOWN_TIMEOUT": "soon",
		"DB_MAX_CONNS":     "many",
		"DEBUG":            "perhaps",
		// DB_URL missing
	})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *config.Error, got %T %v", err, err)
	}
	got := map[string]*VarError{}
	for _, v := range ce.Vars {
		got[v.Var] = v
	}
	for _, name := range []string{"SHUTDOWN_TIMEOUT", "DB_MAX_CONNS", "DEBUG", "DB_URL"} {
		if got[name] == nil {
			t.Errorf("%s not reported; got %v", name, err)
		}
	}
	if len(ce.Vars) != 4 {
		t.Errorf("got %d problems, want 4: %v", len(ce.Vars), err)
	}
	if v := got["SHUTDOWN_TIMEOUT"]; v != nil && (!strings.Contains(v.Problem, `"soon"`) || !strings.Contains(v.Expected, "duration") || !strings.Contains(v.Expected, "drain deadline")) {
		t.Errorf("SHUTDOWN_TIMEOUT message lacks value, type or description: %v", v)
	}
	if v := got["DB_URL"]; v != nil && (!strings.Contains(v.Problem, "not set") || !strings.Contains(v.Expected, "sqlite://")) {
		t.Errorf("DB_URL message: %v", v)
	}
	// One message, one line per variable, sorted.
	msg := err.Error()
	if strings.Count(msg, "\n") != 4 || strings.Index(msg, "DB_MAX_CONNS") > strings.Index(msg, "SHUTDOWN_TIMEOUT") {
		t.Errorf("message not one sorted line per variable:\n%s", msg)
	}
}

func TestValidateRunsAfterParsing(t *testing.T) {
	var c testConfig
	err := load(&c, map[string]string{"DB_URL": "x", "SHUTDOWN_TIMEOUT": "-1s", "REPLICAS": "0"})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Vars) != 2 {
		t.Fatalf("want the two Validate complaints, got %v", err)
	}
	if ce.Vars[0].Var != "REPLICAS" || ce.Vars[1].Var != "SHUTDOWN_TIMEOUT" || ce.Vars[1].Problem != "must be positive" {
		t.Errorf("validation errors: %v", err)
	}
	if !strings.Contains(ce.Vars[1].Expected, "drain deadline") {
		t.Errorf("validation error lacks the description: %v", ce.Vars[1])
	}
}

type plainValidate struct {
	A string `env:"A"`
}

func (plainValidate) Validate() error { return errors.New("A and B exclude each other") }

func TestValidatePlainErrorIsKept(t *testing.T) {
	err := load(&plainValidate{}, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "A and B exclude each other") {
		t.Fatalf("plain Validate error lost: %v", err)
	}
}

func TestLoadRejectsNonStruct(t *testing.T) {
	var s string
	if err := Load(&s); err == nil {
		t.Fatal("Load accepted a *string")
	}
}

func TestTable(t *testing.T) {
	vars := Table(testConfig{})
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = v.Name
	}
	want := "HTTP_ADDR SHUTDOWN_TIMEOUT KAFKA_BROKERS REPLICAS DEBUG DB_URL DB_MAX_CONNS"
	if strings.Join(names, " ") != want {
		t.Errorf("names %v, want %s", names, want)
	}
	url := vars[5]
	if !url.Required || url.Default != "" || url.Description != "postgres://... or sqlite://path" {
		t.Errorf("DB_URL row: %+v", url)
	}
	if vars[1].Default != "10s" || !strings.HasPrefix(vars[1].Type, "duration") {
		t.Errorf("SHUTDOWN_TIMEOUT row: %+v", vars[1])
	}
}

func TestMarkdownAndSyncDoc(t *testing.T) {
	md := Markdown(Section{Title: "order", Config: &testConfig{}})
	if !strings.Contains(md, "### order\n") || !strings.Contains(md, "| `DB_URL` | - | yes | string | postgres://... or sqlite://path |") {
		t.Errorf("markdown:\n%s", md)
	}
	path := filepath.Join(t.TempDir(), "configuration.md")
	if err := os.WriteFile(path, []byte("# Configuration\n\nHand-written intro.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sec := Section{Title: "order", Config: testConfig{}}
	if err := SyncDoc(path, "order", false, sec); err == nil {
		t.Fatal("SyncDoc without update accepted a file missing the block")
	}
	if err := SyncDoc(path, "order", true, sec); err != nil {
		t.Fatal(err)
	}
	if err := SyncDoc(path, "order", false, sec); err != nil {
		t.Fatalf("freshly generated block reported stale: %v", err)
	}
	// Another binary's block is added beside it, and the intro survives.
	other := Section{Title: "payment", Config: plainValidate{}}
	if err := SyncDoc(path, "payment", true, other); err != nil {
		t.Fatal(err)
	}
	// A changed config makes the committed block stale.
	type changed struct {
		testConfig
		Extra string `env:"EXTRA"`
	}
	if err := SyncDoc(path, "order", false, Section{Title: "order", Config: changed{}}); err == nil {
		t.Error("stale block not detected")
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if !strings.HasPrefix(s, "# Configuration\n\nHand-written intro.\n") || strings.Count(s, "<!-- config:order -->") != 1 || !strings.Contains(s, "`A`") {
		t.Errorf("file after syncs:\n%s", s)
	}
}

// TestMustLoadExits runs MustLoad in a child process: it must print one
// message naming the variable and exit with status 2.
func TestMustLoadExits(t *testing.T) {
	if os.Getenv("CONFIG_TEST_CHILD") == "1" {
		var c testConfig
		MustLoad(&c)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMustLoadExits$")
	cmd.Env = append(os.Environ(), "CONFIG_TEST_CHILD=1", "DB_URL=", "REPLICAS=x")
	cmd.Env = filterEnv(cmd.Env, "DB_URL")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "DB_URL: required but not set") || !strings.Contains(string(out), `REPLICAS: "x" is invalid`) {
		t.Errorf("output:\n%s", out)
	}
}

func filterEnv(env []string, drop string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, drop+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestLogLevelVariable: a slog.Level field takes the four names and refuses
// the rest in the one error, including what slog.Level.UnmarshalText would
// take (DEBUG, info+2) and "", which env would leave at info without a word.
func TestLogLevelVariable(t *testing.T) {
	type levelConfig struct {
		Level slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	}
	for value, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		c := levelConfig{Level: 99}
		if err := load(&c, map[string]string{"LOG_LEVEL": value}); err != nil || c.Level != want {
			t.Errorf("LOG_LEVEL=%s: level %v, err %v", value, c.Level, err)
		}
	}
	var c levelConfig
	if err := load(&c, map[string]string{}); err != nil || c.Level != slog.LevelInfo {
		t.Errorf("LOG_LEVEL unset: level %v, err %v; want the default info", c.Level, err)
	}
	for _, value := range []string{"verbose", "loud", "warning", "DEBUG", "info+2", "", " "} {
		err := load(&levelConfig{}, map[string]string{"LOG_LEVEL": value})
		var bad *Error
		if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != "LOG_LEVEL" ||
			!strings.Contains(err.Error(), "must be debug, info, warn or error") ||
			!strings.Contains(err.Error(), "log level (debug, info, warn, error)") {
			t.Errorf("LOG_LEVEL=%q: %v; want it refused once, naming the four", value, err)
		}
	}
}

type kafkaSection struct {
	Brokers []string `env:"BROKERS" envDefault:"127.0.0.1:19092"`
}

func (k *kafkaSection) Validate() error {
	if len(k.Brokers) == 0 || k.Brokers[0] == "" {
		return Invalid("KAFKA_BROKERS", "needs at least one broker")
	}
	return nil
}

type withSection struct {
	Name  string       `env:"NAME" envDefault:"x"`
	Kafka kafkaSection `envPrefix:"KAFKA_"`
}

func (w withSection) Validate() error {
	if w.Name == "bad" {
		return Invalid("NAME", "must not be bad")
	}
	return nil
}

func TestNestedValidate(t *testing.T) {
	var c withSection
	err := load(&c, map[string]string{"KAFKA_BROKERS": ",", "NAME": "bad"})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Vars) != 2 || ce.Vars[0].Var != "KAFKA_BROKERS" || ce.Vars[1].Var != "NAME" {
		t.Fatalf("want both the nested and the outer Validate complaints, got %v", err)
	}
	if err := load(&c, map[string]string{}); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

type emptyConfig struct {
	Admin   string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9082"`
	Etcd    []string      `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:12379"`
	Wait    time.Duration `env:"WAIT" envDefault:"10s"`
	Quiet   bool          `env:"QUIET" envDefault:"true"`
	Token   string        `env:"TOKEN,required" envDefault:""`
	Nonzero string        `env:"NONZERO,notEmpty" envDefault:"x"`
	DB      db            `envPrefix:"DB_"`
}

// A variable set to "" means empty (the conventions' "ADMIN_ADDR empty
// disables"); only an unset one takes its default.
func TestSetButEmptyIsNotTheDefault(t *testing.T) {
	var unset emptyConfig
	if err := load(&unset, map[string]string{"DB_URL": "x"}); err != nil {
		t.Fatal(err)
	}
	if unset.Admin != "127.0.0.1:9082" || len(unset.Etcd) != 1 || unset.Wait != 10*time.Second || !unset.Quiet || unset.Nonzero != "x" || unset.DB.MaxConns != 10 {
		t.Errorf("unset variables did not take their defaults: %+v", unset)
	}

	var empty emptyConfig
	err := load(&empty, map[string]string{"DB_URL": "x", "ADMIN_ADDR": "", "ETCD_ENDPOINTS": "", "WAIT": "", "QUIET": "", "DB_MAX_CONNS": ""})
	if err != nil {
		t.Fatal(err)
	}
	if empty.Admin != "" || len(empty.Etcd) != 0 || empty.Wait != 0 || empty.Quiet || empty.DB.MaxConns != 0 {
		t.Errorf("variables set to \"\" took their defaults: %+v", empty)
	}

	// notEmpty still refuses an empty value rather than defaulting it.
	err = load(&emptyConfig{}, map[string]string{"DB_URL": "x", "NONZERO": ""})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Vars) != 1 || ce.Vars[0].Var != "NONZERO" || ce.Vars[0].Problem != "must not be empty" {
		t.Errorf("NONZERO=\"\": got %v, want must not be empty", err)
	}
}

// The process environment goes through the same rule as the test map.
func TestLoadProcessEnvSetButEmpty(t *testing.T) {
	t.Setenv("DB_URL", "x")
	t.Setenv("ADMIN_ADDR", "")
	t.Setenv("WAIT", "") // registers the restore of any outer value ...
	os.Unsetenv("WAIT")  // ... so WAIT can be truly unset for this test
	var c emptyConfig
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.Admin != "" || c.Wait != 10*time.Second {
		t.Errorf("Load from the process: ADMIN_ADDR=%q (want empty), WAIT=%v (want the 10s default)", c.Admin, c.Wait)
	}
}

type twoDefaults struct {
	A struct {
		X string `env:"X" envDefault:"one"`
	}
	B struct {
		X string `env:"X" envDefault:"two"`
	}
}

func TestConflictingDefaultsAreReported(t *testing.T) {
	err := load(&twoDefaults{}, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "X has two defaults") {
		t.Errorf("got %v, want a conflicting-defaults error", err)
	}
	// Set, the variable needs no default and both fields read it.
	var c twoDefaults
	if err := load(&c, map[string]string{"X": "v"}); err != nil || c.A.X != "v" || c.B.X != "v" {
		t.Errorf("X=v: %v %+v", err, c)
	}
}

// Two hosted binaries in one process each get their own variables: LoadFrom
// reads only the map it is given, never the process environment.
func TestLoadFromIgnoresTheProcessEnvironment(t *testing.T) {
	t.Setenv("HTTP_ADDR", ":9999")
	t.Setenv("DB_URL", "postgres://process")
	var c testConfig
	if err := LoadFrom(&c, map[string]string{"DB_URL": "sqlite://hosted"}); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8082" || c.DB.URL != "sqlite://hosted" {
		t.Errorf("LoadFrom took the process environment: addr %q, db %q", c.Addr, c.DB.URL)
	}
	var empty testConfig
	err := LoadFrom(&empty, nil)
	var bad *Error
	if !errors.As(err, &bad) || len(bad.Vars) != 1 || bad.Vars[0].Var != "DB_URL" {
		t.Errorf("LoadFrom(nil) = %v, want only DB_URL missing", err)
	}
}

type hostileConfig struct {
	URL     string        `env:"URL,notEmpty" desc:"where the data is"`
	Name    string        `env:"NAME,notEmpty" envDefault:"svc"`
	Count   int           `env:"COUNT" envDefault:"5"`
	Small   uint32        `env:"SMALL" envDefault:"5"`
	Wait    time.Duration `env:"WAIT" envDefault:"10s" desc:"how long to wait"`
	Timeout time.Duration `env:"TIMEOUT" envDefault:"1s"`
	Ratio   float64       `env:"RATIO" envDefault:"0.5"`
	Scale   float32       `env:"SCALE" envDefault:"1"`
}

func (c *hostileConfig) Validate() error {
	if c.Timeout <= 0 {
		return Invalid("TIMEOUT", "must be positive")
	}
	return nil
}

// Blank, padded, overflowing and negative values: one error naming every
// variable with what is wrong, and no panic.
func TestHostileValuesAreAllListed(t *testing.T) {
	var c hostileConfig
	err := load(&c, map[string]string{
		"URL":   " \t ",
		"NAME":  "  ",
		"COUNT": "99999999999999999999",
		"SMALL": "4294967296",
		"WAIT":  " 5s",
		"RATIO": "NaN", // strconv accepts NaN and the infinities, and NaN passes every range check written as comparisons
		"SCALE": "-Inf",
	})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *config.Error, got %T %v", err, err)
	}
	want := map[string]string{
		"URL":   "must not be empty",
		"NAME":  "must not be empty",
		"COUNT": `"99999999999999999999" is invalid`,
		"SMALL": `"4294967296" is invalid`,
		"WAIT":  `" 5s" is invalid`,
		"RATIO": `"NaN" is invalid`,
		"SCALE": `"-Inf" is invalid`,
	}
	if len(ce.Vars) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ce.Vars), len(want), err)
	}
	for _, v := range ce.Vars {
		if w, ok := want[v.Var]; !ok || v.Problem != w {
			t.Errorf("%s: problem %q, want %q", v.Var, v.Problem, w)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, "WAIT: \" 5s\" is invalid (expected duration (e.g. 500ms, 10s): how long to wait)") {
		t.Errorf("message does not say what WAIT expects:\n%s", msg)
	}

	// A value that does not parse and one that breaks a rule: both in one
	// message (Validate runs despite the parse error).
	err = load(&hostileConfig{}, map[string]string{"URL": "x", "TIMEOUT": "-1s", "WAIT": "9223372037s"})
	if err == nil || !strings.Contains(err.Error(), "TIMEOUT: must be positive") || !strings.Contains(err.Error(), `WAIT: "9223372037s" is invalid`) {
		t.Errorf("overflowing WAIT and negative TIMEOUT: %v", err)
	}

	// Finite floats still parse, into both widths.
	var ok hostileConfig
	if err := load(&ok, map[string]string{"URL": "x", "RATIO": "0.25", "SCALE": "1e3"}); err != nil || ok.Ratio != 0.25 || ok.Scale != 1000 {
		t.Errorf("RATIO=0.25 SCALE=1e3: %v, %v %v", err, ok.Ratio, ok.Scale)
	}
}

// Lists are trimmed item by item: "a, b," is the two items a and b, which a
// client given " b" or "" would fail to dial far from the variable.
func TestListItemsAreTrimmed(t *testing.T) {
	type listConfig struct {
		Brokers []string        `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092"`
		Waits   []time.Duration `env:"WAITS" envSeparator:";"`
	}
	for _, tc := range []struct {
		brokers, waits string
		want           []string
		wantWaits      []time.Duration
	}{
		{"a:1, b:2", "1s; 2s", []string{"a:1", "b:2"}, []time.Duration{time.Second, 2 * time.Second}},
		{" a:1 ,,b:2,", ";1s;", []string{"a:1", "b:2"}, []time.Duration{time.Second}},
		{" , ", " ", nil, nil},
		{"a b:1", "", []string{"a b:1"}, nil}, // only the ends of an item are trimmed
	} {
		var c listConfig
		if err := load(&c, map[string]string{"KAFKA_BROKERS": tc.brokers, "WAITS": tc.waits}); err != nil {
			t.Errorf("KAFKA_BROKERS=%q WAITS=%q: %v", tc.brokers, tc.waits, err)
			continue
		}
		if !slices.Equal(c.Brokers, tc.want) || !slices.Equal(c.Waits, tc.wantWaits) {
			t.Errorf("KAFKA_BROKERS=%q WAITS=%q: got %q %v, want %q %v", tc.brokers, tc.waits, c.Brokers, c.Waits, tc.want, tc.wantWaits)
		}
	}
}

// rate stands for a type parsed from a form of its own (the gateway's limits).
type rate struct{ n int }

func (r *rate) UnmarshalText(b []byte) error {
	_, err := fmt.Sscanf(string(b), "%d/s", &r.n)
	return err
}

func (rate) TypeName() string { return "rate (N/s)" }

// A type with a form of its own is named by its TypeName in the table and in
// the error, not by its Go name ("config.rate").
func TestTypeNameOfOwnType(t *testing.T) {
	type withRate struct {
		Limit rate  `env:"LIMIT" envDefault:"5/s" desc:"per client"`
		Burst *rate `env:"BURST"`
	}
	vars := Table(withRate{})
	if vars[0].Type != "rate (N/s)" || vars[1].Type != "rate (N/s)" {
		t.Errorf("types %q and %q, want the TypeName", vars[0].Type, vars[1].Type)
	}
	var c withRate
	err := load(&c, map[string]string{"LIMIT": "lots"})
	if err == nil || !strings.Contains(err.Error(), "LIMIT: \"lots\" is invalid (expected rate (N/s): per client)") {
		t.Errorf("error %v does not say what LIMIT expects", err)
	}
}

// Two sections of one configuration may name a field alike (a Port in each),
// and env's parse error names only the field: the variable reported must be
// the one whose value is bad, and a variable two fields read is one problem.
func TestParseErrorNamesTheBadVariableOnce(t *testing.T) {
	type section struct {
		Port int `env:"PORT"`
	}
	type cfg struct {
		Primary section `envPrefix:"PRIMARY_"`
		Replica section `envPrefix:"REPLICA_"`
		Workers int     `env:"WORKERS"`
		Threads int     `env:"WORKERS"`
		Limit   int     `env:"LIMIT,required"`
		Cap     int     `env:"LIMIT,required"`
	}
	var c cfg
	err := load(&c, map[string]string{"PRIMARY_PORT": "5432", "REPLICA_PORT": "fifty", "WORKERS": "many"})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load = %v, want *Error", err)
	}
	var got []string
	for _, v := range ce.Vars {
		got = append(got, v.Var+": "+v.Problem)
	}
	want := []string{`LIMIT: required but not set`, `REPLICA_PORT: "fifty" is invalid`, `WORKERS: "many" is invalid`}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}

	// Both sections bad: each is named, neither twice.
	err = load(&c, map[string]string{"PRIMARY_PORT": "x", "REPLICA_PORT": "y", "WORKERS": "1", "LIMIT": "2"})
	if !errors.As(err, &ce) {
		t.Fatalf("Load = %v, want *Error", err)
	}
	got = got[:0]
	for _, v := range ce.Vars {
		got = append(got, v.Var+": "+v.Problem)
	}
	want = []string{`PRIMARY_PORT: "x" is invalid`, `REPLICA_PORT: "y" is invalid`}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// A variable left unset whose envDefault does not parse (a slip in the struct tag) is reported with that default, not
// as the empty value the operator never gave.
func TestBadDefaultIsShown(t *testing.T) {
	var c struct {
		Wait time.Duration `env:"WAIT" envDefault:"5 seconds"`
	}
	err := load(&c, map[string]string{})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Vars) != 1 || ce.Vars[0].Problem != `"5 seconds" is invalid` {
		t.Fatalf("Load = %v, want WAIT: \"5 seconds\" is invalid", err)
	}
}

// A section read in two places (the same variables) is validated in both: its complaint is one problem, listed once.
func TestSameComplaintListedOnce(t *testing.T) {
	var c struct {
		Primary positivePort
		Replica positivePort
	}
	err := load(&c, map[string]string{"PORT": "-1"})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Vars) != 1 {
		t.Fatalf("Load = %v, want PORT listed once", err)
	}
}

type positivePort struct {
	Port int `env:"PORT"`
}

func (p positivePort) Validate() error {
	if p.Port <= 0 {
		return Invalid("PORT", "must be positive")
	}
	return nil
}
