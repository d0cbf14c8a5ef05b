package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
)

// Dynamic is the JSON document at /shanhai/config/<GATEWAY_DYNAMIC_KEY>,
// applied without restart:
//
//	{"canary":   {"order": {"v1": 90, "v2": 10}},
//	 "timeouts": {"orders": "2s"},
//	 "keyed_retry": {"orders": true},
//	 "limits":   {"ip": "1000/1s:2000", "login": "10/1m:5", "user": "100/1s"}}
//
// Absent parts keep the environment's values.
type Dynamic struct {
	Canary   Canary              `json:"canary,omitempty"`
	Timeouts map[string]Duration `json:"timeouts,omitempty"`
	// KeyedRetry per route name: whether its upstream honours
	// Idempotency-Key (GATEWAY_KEYED_RETRY_ROUTES for the routes not named).
	KeyedRetry map[string]bool `json:"keyed_retry,omitempty"`
	Limits     map[string]Rate `json:"limits,omitempty"`
}

// LimitNames are the limits a document's "limits" may set.
var LimitNames = []string{"ip", "login", "user"}

// UnmarshalJSON refuses a section or limit name it does not know. JSON
// ignores unknown names, so "limit" for "limits" or "users" for "user" made a
// valid document that set nothing: every limit went back to the
// environment's while the log said the document was applied. Refused, the
// document is bad and pkg/dynconfig keeps the last good one, logs and
// counts it. Canary services and route names are not checked here: only the
// route table knows them, and gateways with other tables may share the key
// (run.go logs the names it does not route).
//
// A key named twice in one object (a weight, a timeout, a whole section,
// also "limits" beside "Limits") is refused by the platform's one rule
// (pkg/jsonkey), as HTTP bodies and events are: encoding/json keeps the last,
// other readers the first, so a second "limits" with "login":"0" turned
// the login limit off while a reviewer or a first-key-wins tool saw it set.
func (d *Dynamic) UnmarshalJSON(b []byte) error {
	type plain Dynamic // the same fields without this method
	var p plain
	if err := jsonkey.Decode(b, &p); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(p.Limits)) {
		if !slices.Contains(LimitNames, name) {
			return fmt.Errorf("limit %q: want one of %s", name, strings.Join(LimitNames, ", "))
		}
	}
	*d = Dynamic(p)
	return nil
}

// Canary is the canary weights per service: version → share of the
// service's untagged traffic (canary.Weights).
type Canary map[string]map[string]int

// MaxWeight bounds one canary weight. canary.Weights.Pick adds a service's
// weights in an int, and weights near the integer maximum wrapped the sum:
// to 0, which reads as no weights at all (every instance eligible, versions
// left out included), or to a negative number that split the traffic
// otherwise than the weights say. A million gives shares finer than one
// in a million, and any number of versions a service will have cannot
// reach the integer maximum.
const MaxWeight = 1_000_000

// UnmarshalJSON refuses a weight outside 0..MaxWeight (a negative one was
// read as 0), naming the first such service/version in sorted order, and a
// version named "": canary.Weights.Pick answers "" for no preference, so
// that share went to every version, the others' included.
func (c *Canary) UnmarshalJSON(b []byte) error {
	var m map[string]map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, svc := range slices.Sorted(maps.Keys(m)) {
		for _, v := range slices.Sorted(maps.Keys(m[svc])) {
			if v == "" {
				return fmt.Errorf("canary weight %s/\"\": a version needs a name", svc)
			}
			if n := m[svc][v]; n < 0 || n > MaxWeight {
				return fmt.Errorf("canary weight %s/%s = %d: must be 0 to %d", svc, v, n, MaxWeight)
			}
		}
	}
	*c = m
	return nil
}

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

// UnmarshalJSON reads "250ms" style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("duration %q must be positive, like \"2s\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the string form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads the env form "count/period[:burst]" from a string.
func (r *Rate) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("limit must be a string like \"100/1s:200\": %w", err)
	}
	return r.UnmarshalText([]byte(s))
}

// MarshalJSON writes the env form.
func (r Rate) MarshalJSON() ([]byte, error) {
	if r.Count == 0 {
		return json.Marshal("0")
	}
	s := fmt.Sprintf("%d/%s", r.Count, r.Period)
	if r.Burst > 0 {
		s += fmt.Sprintf(":%d", r.Burst)
	}
	return json.Marshal(s)
}
