package telemetry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// The OTLP exporters and the resource read their own variables, and what
// they cannot read they skip with a line on the standard logger, if any: an
// endpoint without a scheme ("collector:4318") sent every span to
// https://localhost:4318 instead, a header without '=' (a lost
// Authorization) was dropped, and so was a resource attribute. CheckEnv
// checks those variables in pkg/config's form, so that a binary lists a bad
// one with its other bad variables in one message at start
// (server.Part.LoadConfig does; docs/configuration.md) rather than only in
// Setup, after the rest of its configuration loaded. Setup checks them again
// and refuses a bad one, for callers that do not go through LoadConfig.

// Names of the variables this file checks, beyond the sampler's (sampling.go).
const (
	envDisabled        = "OTEL_SDK_DISABLED"
	envResource        = "OTEL_RESOURCE_ATTRIBUTES"
	envPropagators     = "OTEL_PROPAGATORS"
	envTracesExporter  = "OTEL_TRACES_EXPORTER"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
)

// otlpSignal is one signal's OTLP variables: its exporter switch and the
// name its own variables carry (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), each
// read before the general one (OTEL_EXPORTER_OTLP_ENDPOINT).
type otlpSignal struct {
	exporter, signal string
}

var (
	tracesOTLP  = otlpSignal{envTracesExporter, "TRACES"}
	metricsOTLP = otlpSignal{envMetricsExporter, "METRICS"}
)

// own is the name of the signal's own variable for setting, e.g. ENDPOINT.
func (s otlpSignal) own(setting string) string {
	return "OTEL_EXPORTER_OTLP_" + s.signal + "_" + setting
}

// both is the signal's own variable for setting and the general one.
func (s otlpSignal) both(setting string) []string {
	return []string{s.own(setting), "OTEL_EXPORTER_OTLP_" + setting}
}

// TracesEndpoint is where Setup exports spans, read from the environment as
// Setup reads it: the traces endpoint before the general one. When a
// variable turns OTLP trace export off whatever the endpoints say, endpoint
// is "" and off names it ("OTEL_SDK_DISABLED=true" or
// "OTEL_TRACES_EXPORTER=none"), so what a program tells its user about its
// traces (cmd/shanhai's banner) cannot drift from what Setup does.
func TracesEndpoint() (endpoint, off string) {
	switch {
	case strings.EqualFold(processEnv.first(envDisabled), "true"):
		return "", envDisabled + "=true"
	case strings.EqualFold(processEnv.first(envTracesExporter), "none"):
		return "", envTracesExporter + "=none"
	}
	return tracesOTLP.exportsTo(processEnv), ""
}

// environment reads one variable: os.Getenv, or a hosted part's own
// variables (server.Part.Env).
type environment func(string) string

var processEnv environment = os.Getenv

// first is the trimmed value of the first of keys that is set.
func (e environment) first(keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(e(k)); v != "" {
			return v
		}
	}
	return ""
}

// sdkDisabled reports OTEL_SDK_DISABLED: true only for a case-insensitive
// "true", as the specification defines booleans; another value but "false"
// is warned about and read as false.
func sdkDisabled(log *slog.Logger) bool {
	v := strings.TrimSpace(os.Getenv(envDisabled))
	switch {
	case strings.EqualFold(v, "true"):
		return true
	case v != "" && !strings.EqualFold(v, "false"):
		log.Warn("opentelemetry: not a boolean, read as false", slog.String(envDisabled, v))
	}
	return false
}

// exportsTo returns where s is exported to, or "" when it is not (its
// exporter variable says none, or no endpoint is set). It does not check
// the endpoint: checkEnv does.
func (s otlpSignal) exportsTo(e environment) string {
	if strings.EqualFold(e.first(s.exporter), "none") {
		return ""
	}
	return e.first(s.both("ENDPOINT")...)
}

// CheckEnv returns the OTEL_* variables Setup would refuse, as a
// *config.Error listing each with what is wrong, or nil. It reads environ
// as config.LoadFrom does, or the process environment (where Setup reads
// them) when environ is nil.
func CheckEnv(environ map[string]string) error {
	e := processEnv
	if environ != nil {
		e = func(k string) string { return environ[k] }
	}
	return checkEnv(e, strings.EqualFold(e.first(envDisabled), "true"))
}

// checkEnv refuses OTEL_RESOURCE_ATTRIBUTES and, unless the SDK is
// disabled, the OTLP variables of the signals that will be exported, when
// the SDK would misread them, all in one *config.Error.
func checkEnv(e environment, disabled bool) error {
	var errs []*config.VarError
	bad := func(name string, err error) {
		errs = append(errs, &config.VarError{Var: name, Problem: err.Error()})
	}
	if err := checkResource(e(envResource)); err != nil {
		bad(envResource, err)
	}
	if err := checkPropagators(e(envPropagators)); err != nil {
		bad(envPropagators, err)
	}
	if !disabled {
		errs = append(errs, checkNumbers(e)...)
	}
	for _, s := range []otlpSignal{tracesOTLP, metricsOTLP} {
		if disabled {
			break
		}
		if v := e.first(s.exporter); v != "" && !strings.EqualFold(v, "otlp") && !strings.EqualFold(v, "none") {
			bad(s.exporter, fmt.Errorf("%q is not supported: only otlp and none are", v))
		}
		if s.exportsTo(e) == "" {
			continue
		}
		grpc := e.protocol(s.own("PROTOCOL")) == "grpc"
		for _, k := range s.both("ENDPOINT") {
			if err := checkEndpoint(strings.TrimSpace(e(k)), grpc); err != nil {
				bad(k, err)
			}
		}
		for _, c := range otlpChecks {
			for _, k := range s.both(c.setting) {
				if err := c.check(strings.TrimSpace(e(k))); err != nil {
					bad(k, err)
				}
			}
		}
		errs = append(errs, checkClientCert(e, s.both("CLIENT_CERTIFICATE"), s.both("CLIENT_KEY"))...)
		if name, err := s.checkInsecure(e); err != nil {
			bad(name, err)
		}
		if p := e.protocol(s.own("PROTOCOL")); p != "grpc" && p != "http/protobuf" {
			name, v := s.firstSet(e, "PROTOCOL")
			bad(name, fmt.Errorf("%q is not supported: only grpc and http/protobuf are", v))
		}
	}
	if errs = dedup(errs); len(errs) == 0 {
		return nil
	}
	// Sorted by variable, as config.Load lists them.
	slices.SortStableFunc(errs, func(a, b *config.VarError) int { return strings.Compare(a.Var, b.Var) })
	return &config.Error{Vars: errs}
}

// otlpChecks check the exporters' settings but the endpoint, by name
// (HEADERS is OTEL_EXPORTER_OTLP_HEADERS and each signal's own); each gets
// the variable's trimmed value and accepts an empty one (unset).
var otlpChecks = []struct {
	setting string
	check   func(string) error
}{
	{"HEADERS", checkHeaders},
	// Whole milliseconds, as the specification says: "10s" was ignored
	// and the 10 s default used.
	{"TIMEOUT", func(v string) error {
		if n, err := strconv.Atoi(v); v != "" && (err != nil || n < 0) {
			return fmt.Errorf("%q must be a whole number of milliseconds", v)
		}
		return nil
	}},
	// The exporters compress for "gzip" exactly and send anything else
	// uncompressed.
	{"COMPRESSION", func(v string) error {
		if v != "" && v != "gzip" && v != "none" {
			return fmt.Errorf("%q must be gzip or none", v)
		}
		return nil
	}},
	// Read as true only for "true" in any case, as the specification reads
	// booleans: "1" or "yes" meant TLS, without a word.
	{"INSECURE", func(v string) error {
		if v != "" && !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
			return fmt.Errorf("%q must be true or false", v)
		}
		return nil
	}},
	// Unreadable or not PEM, the exporters fell back to the system's roots,
	// and every export then failed its TLS handshake.
	{"CERTIFICATE", func(v string) error {
		if v == "" {
			return nil
		}
		pem, err := os.ReadFile(v)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", v)
		}
		return nil
	}},
}

// checkInsecure refuses an OTEL_EXPORTER_OTLP_INSECURE (the signal's own
// before the general one) that contradicts the scheme of the endpoint the
// signal is sent to. The specification lets an http or https scheme decide
// and the variable apply only to a gRPC endpoint without one, but Go's
// exporters apply it after the scheme: "false" beside an http:// endpoint
// made them speak TLS to a plain-text collector, and every export failed
// with only a warning ("server gave HTTP response to HTTPS client"); "true"
// beside https:// sent spans in clear text. A value that agrees with the
// scheme changes nothing and is accepted. name is the variable refused.
func (s otlpSignal) checkInsecure(e environment) (name string, err error) {
	name, v := s.firstSet(e, "INSECURE")
	if !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
		return "", nil // unset, or not a boolean: otlpChecks says so
	}
	epName, ep := s.firstSet(e, "ENDPOINT")
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", nil
	}
	if strings.EqualFold(v, "true") == (u.Scheme == "http") {
		return "", nil
	}
	return name, fmt.Errorf("%s contradicts the %s:// scheme of %s: the exporter would follow %s; "+
		"unset it and let the scheme decide", v, u.Scheme, epName, name)
}

// firstSet is the name and trimmed value of the signal's own variable for
// setting if it is set, else of the general one (the exporters' precedence).
func (s otlpSignal) firstSet(e environment, setting string) (name, value string) {
	for _, k := range s.both(setting) {
		if v := strings.TrimSpace(e(k)); v != "" {
			return k, v
		}
	}
	return "", ""
}

// checkPropagators accepts OTEL_PROPAGATORS only where it names what
// Propagator does anyway, W3C tracecontext and baggage (in any order and
// case, a repeated name once, as the specification deduplicates): the platform has that one format, on every carrier, and another
// list (b3, or none) was ignored without a word. The SDK's own setting
// applies even when it is disabled, so this is checked then too.
func checkPropagators(v string) error {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var got []string
	for p := range strings.SplitSeq(v, ",") {
		got = append(got, strings.ToLower(strings.TrimSpace(p)))
	}
	slices.Sort(got)
	if !slices.Equal(slices.Compact(got), []string{"baggage", "tracecontext"}) {
		return fmt.Errorf("%q is not supported: only tracecontext,baggage is (the platform's one format)", v)
	}
	return nil
}

// sdkNumbers are the SDK's numeric variables, with the least each takes.
// The SDK reads each as a plain integer (milliseconds for the delays and
// timeouts) and falls back to its default on anything else: for
// OTEL_BSP_SCHEDULE_DELAY=5s not even a warning is printed (it is logged at
// the OTel logger's Info, below what it prints by default), and the metric
// reader ignores a value that is not positive. The batch processor takes 0
// as it is, and only OTEL_BSP_EXPORT_TIMEOUT=0 means something (no
// deadline): a schedule delay of 0 re-arms its timer at 0 after every
// wake-up, so its goroutine spun (0.4-0.8 s of CPU per idle second,
// measured), a queue of 0 drops every span its goroutine is not waiting
// for, and a batch of 0 exports spans one by one.
var sdkNumbers = []struct {
	name  string
	least int64
}{
	{"OTEL_BSP_SCHEDULE_DELAY", 1},
	{"OTEL_BSP_EXPORT_TIMEOUT", 0},
	{"OTEL_BSP_MAX_QUEUE_SIZE", 1},
	{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1},
	{"OTEL_METRIC_EXPORT_INTERVAL", 1},
	{"OTEL_METRIC_EXPORT_TIMEOUT", 1},
}

// checkNumbers refuses a value of sdkNumbers that the SDK would ignore.
func checkNumbers(e environment) []*config.VarError {
	var errs []*config.VarError
	for _, n := range sdkNumbers {
		v := strings.TrimSpace(e(n.name))
		if v == "" {
			continue
		}
		// Atoi: the batch processor's parse, narrower than the metric reader's ParseInt on 32-bit platforms.
		if i, err := strconv.Atoi(v); err != nil || int64(i) < n.least {
			errs = append(errs, &config.VarError{Var: n.name, Problem: fmt.Sprintf("%q must be a whole number "+
				"(of milliseconds for a delay, interval or timeout), at least %d", v, n.least)})
		}
	}
	return errs
}

// checkClientCert checks the client certificate and key the exporters
// would load (the signal's own pair before the general one): both given
// and loadable as a pair, or neither. Otherwise the exporters sent no client
// certificate, and a collector that asks for one refused every export.
func checkClientCert(e environment, certVars, keyVars []string) []*config.VarError {
	var errs []*config.VarError
	for i := range certVars {
		cert, key := strings.TrimSpace(e(certVars[i])), strings.TrimSpace(e(keyVars[i]))
		switch {
		case cert == "" && key == "":
		case cert == "" || key == "":
			errs = append(errs, &config.VarError{Var: certVars[i],
				Problem: fmt.Sprintf("give both it and %s or neither", keyVars[i])})
		default:
			if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
				errs = append(errs, &config.VarError{Var: certVars[i],
					Problem: fmt.Sprintf("with %s: %v", keyVars[i], err)})
			}
		}
	}
	return errs
}

// checkEndpoint accepts what the exporter of the signal's protocol reads
// as the endpoint it was given. Both take a URL with scheme http or https
// and a host, which the specification requires them to. Without one, the
// HTTP exporter sent to https://localhost:4318 ("collector:4318" parses as
// scheme "collector"); the gRPC exporter dials any other value that parses
// as a URL as a gRPC target, "collector:4317" (TLS unless
// OTEL_EXPORTER_OTLP_INSECURE=true, as the specification says of an
// endpoint without a scheme) or "unix:///run/otel.sock", so for grpc those
// are accepted. What Go cannot parse as a URL, such as an IP address and
// port without a scheme, both exporters ignore for their localhost default.
// An empty value is unset.
func checkEndpoint(v string, grpc bool) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	web := err == nil && (u.Scheme == "http" || u.Scheme == "https")
	switch {
	case web && u.Host != "":
		return nil
	case grpc && err == nil && !web:
		return nil
	case grpc:
		return fmt.Errorf("%q must be a URL with scheme http or https and a host (e.g. http://collector:4317) "+
			"or a gRPC target Go reads as a URL (collector:4317; not an IP address without a scheme)", v)
	}
	return fmt.Errorf("%q must be a URL with scheme http or https and a host, e.g. http://collector:4318", v)
}

// checkHeaders accepts what the exporters read: comma-separated key=value
// pairs, each key an HTTP token and each value URL-decodable (the W3C
// baggage form the specification names). Empty members are skipped, as the
// exporters skip them.
func checkHeaders(v string) error {
	return checkPairs(v, func(k string) bool { return k != "" && !strings.ContainsFunc(k, notToken) })
}

// checkResource accepts OTEL_RESOURCE_ATTRIBUTES as the SDK reads it:
// comma-separated key=value pairs with a non-empty key and a URL-decodable
// value. The SDK kept the members it could read and dropped the others
// without a word (a value it could not decode kept raw), where the
// specification discards the whole value and reports it.
func checkResource(v string) error {
	return checkPairs(v, func(k string) bool { return k != "" })
}

// checkPairs checks a comma-separated list of key=value members: keyOK
// judges each trimmed key, and each value must be URL-decodable.
func checkPairs(v string, keyOK func(string) bool) error {
	for _, m := range strings.Split(v, ",") {
		if strings.TrimSpace(m) == "" {
			continue
		}
		k, val, ok := strings.Cut(m, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			return fmt.Errorf("%q is not key=value", strings.TrimSpace(m))
		case !keyOK(k):
			return fmt.Errorf("%q is not a valid key", k)
		}
		if _, err := url.PathUnescape(strings.TrimSpace(val)); err != nil {
			return fmt.Errorf("the value of %s: %w", k, err)
		}
	}
	return nil
}

// notToken reports whether c may not appear in an HTTP field name (RFC 9110
// tchar).
func notToken(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return false
	}
	return !strings.ContainsRune("!#$%&'*+-.^_`|~", c)
}

// dedup drops repeated errors: the general variables are checked once per
// signal.
func dedup(errs []*config.VarError) []*config.VarError {
	seen := map[string]bool{}
	out := errs[:0]
	for _, err := range errs {
		if !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	return out
}
