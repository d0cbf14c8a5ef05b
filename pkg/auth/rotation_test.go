package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// replicaSigner is one user-service replica as its environment makes it.
func replicaSigner(t *testing.T, c KeyConfig) *Signer {
	t.Helper()
	keys, _, err := c.Keys()
	if err != nil {
		t.Fatalf("%+v: %v", c, err)
	}
	return NewSigner(keys...)
}

func marshal(t *testing.T, k Key) string {
	t.Helper()
	s, err := MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rotationWindow is a rolling restart seen by one gateway: JWKS_URL's load
// balancer answers the verifier's fetch from a replica that has not
// restarted yet (old), and then a token signed by one that has (updated)
// arrives, well within MinRefreshInterval of that fetch. It returns what
// verifying that token gave.
func rotationWindow(t *testing.T, old, updated *Signer) error {
	t.Helper()
	url, set := changingJWKS(t, old.JWKS())
	clk := newClock()
	o := clk.opts()
	o.CacheEntries = -1
	v := NewVerifier(url, o)
	if err := v.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	// From here the balancer answers from the restarted replica: a fetch the
	// verifier were allowed would find the new key.
	set(updated.JWKS())
	clk.add(time.Second) // well within the 5s MinRefreshInterval
	tok, err := updated.Sign("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), tok)
	return err
}

// The window a two-step rotation leaves: AUTH_SIGNING_KEY changed to a new
// key, the old one moved to AUTH_PREVIOUS_KEY, in one rolling restart. A
// gateway that fetched the key set from a replica still on the old
// configuration refuses every token of the new key until it may fetch again
// (MinRefreshInterval, 5s by default, and again each time a fetch lands on
// an old replica), and an old replica's own verifier, which never fetches,
// refuses them until it restarts: users logged in on a new replica are
// logged out by the rest of the platform.
func TestTwoStepRotationRefusesTheNewKeyMeanwhile(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	old := replicaSigner(t, KeyConfig{Current: marshal(t, k1)})
	updated := replicaSigner(t, KeyConfig{Current: marshal(t, k2), Previous: marshal(t, k1)})
	if err := rotationWindow(t, old, updated); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token of the new key after the verifier fetched the old set: %v, want ErrUnknownKey (the window this test documents)", err)
	}
}

// Three-step rotation closes it: AUTH_NEXT_KEY publishes the next key
// without signing with it, and once every replica runs with it, promoting it
// to AUTH_SIGNING_KEY (the old one to AUTH_PREVIOUS_KEY) is a restart in
// which every replica, old or new, publishes both keys.
func TestThreeStepRotationHasNoWindow(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	before := replicaSigner(t, KeyConfig{Current: marshal(t, k1)})
	published := replicaSigner(t, KeyConfig{Current: marshal(t, k1), Next: marshal(t, k2)})
	promoted := replicaSigner(t, KeyConfig{Current: marshal(t, k2), Previous: marshal(t, k1)})

	// Step 1 rolls out: the next key signs nothing, so tokens from either
	// configuration carry the key every verifier already holds.
	if published.Kid() != k1.Kid {
		t.Fatalf("a replica with AUTH_NEXT_KEY signs with kid %s, want the current key's %s", published.Kid(), k1.Kid)
	}
	if err := rotationWindow(t, before, published); err != nil {
		t.Fatalf("step 1 (publish the next key): %v", err)
	}
	// Step 3 rolls out: an old replica's set already holds the new key.
	if err := rotationWindow(t, published, promoted); err != nil {
		t.Fatalf("step 3 (promote it): a token of the new key after the verifier fetched a step-1 set: %v", err)
	}
	// And an old replica's own verifier (it checks tokens against its own
	// set, never fetching) takes the new replicas' tokens.
	self, err := NewStaticVerifier(published.JWKS(), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := promoted.Sign("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := self.Verify(context.Background(), tok); err != nil {
		t.Fatalf("a step-1 replica's own verifier refused a promoted replica's token: %v", err)
	}
}

// AUTH_NEXT_KEY[_FILE] is read, and refused, as the other key variables
// are: a bad key or an unreadable file names the variable it came from, a
// blank value is a mistake (unset it to have no key), and the three keys
// must differ (a next key equal to the current one publishes nothing new;
// a previous key equal to the current one no longer publishes the key the
// live tokens were signed with).
func TestKeyVariablesAreCheckedByName(t *testing.T) {
	k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t)
	b1, b2, b3 := marshal(t, k1), marshal(t, k2), marshal(t, k3)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	keys, _, err := KeyConfig{Current: b1, Previous: b2, NextFile: file("next", b3+"\n")}.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].Kid != k1.Kid || keys[1].Kid != k2.Kid || keys[2].Kid != k3.Kid {
		t.Fatalf("keys %v, want current, previous, next", keys)
	}
	if err := (KeyConfig{Current: b1, Previous: b2, NextFile: file("next", b3)}).Validate(); err != nil {
		t.Fatalf("Validate of three distinct keys: %v", err)
	}

	for _, tc := range []struct {
		name string
		c    KeyConfig
		vars []string // named in the error, in this order of importance
	}{
		{"bad next key", KeyConfig{Current: b1, Next: "bm90IGEga2V5"}, []string{"AUTH_NEXT_KEY"}},
		{"bad next key file", KeyConfig{Current: b1, NextFile: file("bad", "bm90IGEga2V5")}, []string{"AUTH_NEXT_KEY_FILE"}},
		{"missing next key file", KeyConfig{Current: b1, NextFile: filepath.Join(dir, "missing")}, []string{"AUTH_NEXT_KEY_FILE"}},
		{"blank next key", KeyConfig{Current: b1, Next: " \n"}, []string{"AUTH_NEXT_KEY"}},
		{"blank next key file", KeyConfig{Current: b1, NextFile: " "}, []string{"AUTH_NEXT_KEY_FILE"}},
		{"empty next key file's content", KeyConfig{Current: b1, NextFile: file("empty", "\n")}, []string{"AUTH_NEXT_KEY_FILE"}},
		{"bad previous key", KeyConfig{Current: b1, Previous: "bm90IGEga2V5"}, []string{"AUTH_PREVIOUS_KEY"}},
		{"blank previous key", KeyConfig{Current: b1, Previous: "  "}, []string{"AUTH_PREVIOUS_KEY"}},
		{"bad current key file", KeyConfig{CurrentFile: file("badcur", "x")}, []string{"AUTH_SIGNING_KEY_FILE"}},
		{"blank current key", KeyConfig{Current: "\t", DevKeys: true}, []string{"AUTH_SIGNING_KEY"}},
		{"next is current", KeyConfig{Current: b1, Next: b1}, []string{"AUTH_NEXT_KEY", "AUTH_SIGNING_KEY"}},
		{"next file is current", KeyConfig{Current: b1, NextFile: file("same", b1)}, []string{"AUTH_NEXT_KEY_FILE", "AUTH_SIGNING_KEY"}},
		{"next is previous", KeyConfig{Current: b1, Previous: b2, Next: b2}, []string{"AUTH_NEXT_KEY", "AUTH_PREVIOUS_KEY"}},
		{"previous is current", KeyConfig{Current: b1, Previous: b1}, []string{"AUTH_PREVIOUS_KEY", "AUTH_SIGNING_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.c.Keys()
			verr := tc.c.Validate()
			for what, err := range map[string]error{"Keys": err, "Validate": verr} {
				var ve *config.VarError
				if !errors.As(err, &ve) || ve.Var != tc.vars[0] {
					t.Errorf("%s: %v, want a config.VarError for %s", what, err, tc.vars[0])
					continue
				}
				for _, name := range tc.vars[1:] {
					if !strings.Contains(err.Error(), name) {
						t.Errorf("%s: %v, want it to name %s too", what, err, name)
					}
				}
			}
		})
	}
}
