package redact_test

import (
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// secret is every password, token and part of one below: no result may
// hold it.
const secret = "s3cret"

// TestURL holds every case the four copies this package replaced were tested
// with (cmd/shanhai's redactURL, loadgen's redactURL(s), pkg/database's
// redact, pkg/redisurl's hidePassword), and what they missed.
func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// No secret: shown byte for byte, so the banner's export lines paste.
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"127.0.0.1:2379", "127.0.0.1:2379"},
		{"127.0.0.1:9092,127.0.0.1:9093", "127.0.0.1:9092,127.0.0.1:9093"},
		{"postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable", "postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable"},
		{"http://collector:4318/v1/traces", "http://collector:4318/v1/traces"},
		{"sqlite:///var/data/shanhai.db?_pragma=synchronous(normal)", "sqlite:///var/data/shanhai.db?_pragma=synchronous(normal)"},
		{"postgres://h/db?options=-c%20a=b,c", "postgres://h/db?options=-c%20a=b,c"},
		{"just-a-path.db", "just-a-path.db"},
		{"host=127.0.0.1 port=5432 user=shanhai", "host=127.0.0.1 port=5432 user=shanhai"},
		{"", ""},
		{"mysql://x", "mysql://x"},
		{"sqlite://", "sqlite://"},
		{"redis://127.0.0.1:6379/0#x", "redis://127.0.0.1:6379/0#x"},

		// A password url.Parse reads right: the user and host stay.
		{"postgres://bob:" + secret + "@h:5432/db", "postgres://bob:xxxxx@h:5432/db"},
		{"pulsar://bob:" + secret + "@pulsar:6650", "pulsar://bob:xxxxx@pulsar:6650"},
		{"https://tracer:" + secret + "@collector:4318", "https://tracer:xxxxx@collector:4318"},
		{"http://bob:" + secret + "@127.0.0.1:8080", "http://bob:xxxxx@127.0.0.1:8080"},
		{"postgres://user:" + secret + "@127.0.0.1:1/db?connect_timeout=1", "postgres://user:xxxxx@127.0.0.1:1/db?connect_timeout=1"},
		{"redis://:" + secret + "@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"redis://:s3cr:et@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"redis://:p%40ss%23" + secret + "@127.0.0.1/0", "redis://:xxxxx@127.0.0.1/0"},
		{" nats://bob:" + secret + "@h:4222 ", " nats://bob:xxxxx@h:4222 "},

		// In the query: pgx reads password= and sslpassword= there.
		{"postgres://127.0.0.1:1/db?connect_timeout=1&password=" + secret, "postgres://127.0.0.1:1/db?connect_timeout=1&password=xxxxx"},
		{"postgres://127.0.0.1:1/db?sslpassword=" + secret + "&sslmode=require", "postgres://127.0.0.1:1/db?sslpassword=xxxxx&sslmode=require"},
		{"postgres://bob:" + secret + "@h/db?PassWord=" + secret, "postgres://bob:xxxxx@h/db?PassWord=xxxxx"},
		{"postgres://h/db?a=1;password=" + secret, "postgres://h/db?a=1;password=xxxxx"},
		{"postgres://h/db?a=1,x&password=" + secret, "postgres://h/db?a=1,x&password=xxxxx"},
		{"h/db?password=" + secret, "h/db?password=xxxxx"},

		// nats.go sends a user without a password as its token.
		{"nats://" + secret + "@nats:4222", "nats://xxxxx@nats:4222"},
		{"tls://" + secret + "@nats:4222", "tls://xxxxx@nats:4222"},

		// No scheme: bob:pw@host parses as the scheme "bob".
		{"bob:" + secret + "@h:6650", "xxxxx@h:6650"},
		// No scheme, and an '=' before the '@' (a base64 token's padding, as nats.go takes TOKEN@host): the
		// string begins like a key=value connection string, but the '@' says it is user info.
		{"dG9r" + secret + "=@h:4222", "xxxxx@h:4222"},
		{"bob=1:" + secret + "@h:4222", "xxxxx@h:4222"},
		{"user:" + secret + "@127.0.0.1/db", "xxxxx@127.0.0.1/db"},
		// A URL missing its "//" (a typo) parses with its user info in the path.
		{"postgres:/user:" + secret + "@127.0.0.1/db", "xxxxx@127.0.0.1/db"},
		{"postgres//user:" + secret + "@127.0.0.1/db", "xxxxx@127.0.0.1/db"},

		// url.Parse refuses it (a bad escape, common in generated passwords).
		{"pulsar://bob:" + secret + "%zz@127.0.0.1:6650", "pulsar://xxxxx@127.0.0.1:6650"},
		{"nats://bob:" + secret + "%zz@h:4222", "nats://xxxxx@h:4222"},
		{"redis://user:" + secret + "%zz@127.0.0.1:6379/0", "redis://xxxxx@127.0.0.1:6379/0"},
		{"redis://:" + secret + ":et@127.0.0.1:x/0", "redis://xxxxx@127.0.0.1:x/0"},
		{"redis://:" + secret + "@127.0.0.1:63x79/0", "redis://xxxxx@127.0.0.1:63x79/0"},
		{"postgres://bob:pw#" + secret + "@127.0.0.1:1/db?connect_timeout=1&password=" + secret,
			"postgres://xxxxx@127.0.0.1:1/db?connect_timeout=1&password=xxxxx"},
		// ... and has no '@': what it refused may be a password where the host goes.
		{"redis://:" + secret, "redis://xxxxx"},
		{"postgres://127.0.0.1:1x/db?password=" + secret, "postgres://xxxxx"},

		// An unencoded '#', '/' or '?' in a password ends the authority
		// early: url.Parse reads a host (bob:2024) or a user with only the
		// first part of the password.
		{"pulsar://bob:2024#" + secret + "@pulsar:6650", "pulsar://xxxxx@pulsar:6650"},
		{"redis://:1234/" + secret + "@redis:6379/0", "redis://xxxxx@redis:6379/0"},
		{"redis://:1234?" + secret + "@redis:6379", "redis://xxxxx@redis:6379"},
		{"redis://:p@ss#" + secret + "@127.0.0.1/0", "redis://xxxxx@127.0.0.1/0"},
		{"redis://:s3/" + secret + "@127.0.0.1:6379/0", "redis://xxxxx@127.0.0.1:6379/0"},
		{"nats://bob:pw@x#" + secret + "@nats:4222", "nats://xxxxx@nats:4222"},
		{"postgres://bob:pw#" + secret + "@127.0.0.1:1/db?connect_timeout=1", "postgres://xxxxx@127.0.0.1:1/db?connect_timeout=1"},
		{"postgres://bob:pw@x#" + secret + "@127.0.0.1:1/db", "postgres://xxxxx@127.0.0.1:1/db"},
		{"postgres://bob:pw@" + secret + "@127.0.0.1:1/db", "postgres://xxxxx@127.0.0.1:1/db"},

		// Found by FuzzURLHidesThePassword: an '@', '#', '?', '&' or "://"
		// inside a password where the rules above would have cut it.
		{"nats://h:4222/db?a=1&password=:#@" + secret, "nats://xxxxx"},
		{"postgres://h/db?password=ab#" + secret, "postgres://h/db?password=xxxxx"},
		{"postgres://h/db?password=1&=" + secret + "&sslmode=disable", "postgres://h/db?password=xxxxx&sslmode=disable"},
		{"redis://:12?password=ab@h:6379", "redis://xxxxx"},
		{"bob:%&" + secret + "://@h:5432/db", "xxxxx@h:5432/db"},
		{"redis://bob:," + secret + "://@h:6379/0", "redis://xxxxx@h:6379/0"},
		{"nats://h1:4222,:/" + secret + ",//@h2:4222", "nats://xxxxx@h2:4222"},
		{"nats://h1:4222,nats://bob:" + secret + ":,nats://0@h2:4222", "nats://xxxxx@h2:4222"},
		{"bob:=%" + secret + " ?=@h:1/db?password==%" + secret + " ?=&sslmode=disable", "xxxxx@h:1/db?password=xxxxx&sslmode=disable"},
		{"host=h password='/'" + secret + "= dbname=x", "host=h password=xxxxx"},
		{"host=h password=0 =" + secret + " dbname=x", "host=h password=xxxxx xxxxx"},

		// Lists: each address alone where the commas plainly separate them.
		{"nats://127.0.0.1:1,nats://bob:" + secret + "@127.0.0.1:4222", "nats://127.0.0.1:1,nats://bob:xxxxx@127.0.0.1:4222"},
		{"nats://a:" + secret + "@h1:4222, nats://" + secret + "@h2:4222", "nats://a:xxxxx@h1:4222, nats://xxxxx@h2:4222"},
		{"nats://127.0.0.1:4222,nats://bob:pw@x/" + secret + "@nats:4222", "nats://xxxxx@nats:4222"},
		// ... and whole where a comma may be a password's.
		{"nats://bob:1234," + secret + "@h:4222", "nats://bob:xxxxx@h:4222"},
		{"nats://h1:4222,nats://bob:1," + secret + "@h2:4222", "nats://xxxxx@h2:4222"},

		// key=value connection strings (libpq's and pgx's other form).
		{"host=127.0.0.1 port=1 password=" + secret, "host=127.0.0.1 port=1 password=xxxxx"},
		{"host=h password = '" + secret + " \\' x' dbname=db", "host=h password = xxxxx dbname=db"},
		{"host=h sslpassword=" + secret + "\\ x user=bob", "host=h sslpassword=xxxxx user=bob"},
		{"host=h password='" + secret, "host=h password=xxxxx"},
		{"host=h " + secret, "host=h xxxxx"},
		{"host=a,b password=" + secret, "host=a,b password=xxxxx"},
	} {
		got := redact.URL(tc.in)
		if got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, secret) {
			t.Errorf("URL(%q) = %q shows the secret", tc.in, got)
		}
	}
}

// FuzzURLHidesThePassword puts a password (with a marker no rule treats as
// a secret's name) where each kind of address carries one, and checks that
// no part of the marker is shown. Left out are the inputs URL documents it
// reads as their readers do: an unencoded '&' or ';' in a query password, a
// blank in an unquoted key=value one, a ':' in a NATS token (that makes it
// a user and password), and a password beginning "//" after a scheme-less
// user (bob://pw@host is a URL whose user is pw), and a comma and the
// list's scheme in a password of a list (nats://h,nats://bob:1,nats://x@h2).
func FuzzURLHidesThePassword(f *testing.F) {
	for _, seed := range []string{"pw", "p@ss#w/?rd", ":#@", "1&=", ",//", "%zz", "'\\ '", "a,nats://b"} {
		for shape := range 8 {
			f.Add(uint8(shape), seed)
		}
	}
	const marker = "QQZZQ"
	f.Fuzz(func(t *testing.T, shape uint8, around string) {
		pre, post, _ := strings.Cut(around, ",")
		pw := pre + marker + post
		if strings.HasPrefix(pw, "//") || strings.ContainsAny(pw, "\r\n") {
			t.Skip()
		}
		var s string
		switch shape % 8 {
		case 0:
			s = "postgres://bob:" + pw + "@h:5432/db?x=1"
		case 1:
			s = "bob:" + pw + "@h:6650"
		case 2:
			if strings.ContainsAny(pw, "&;") {
				t.Skip()
			}
			s = "postgres://h:5432/db?a=1&password=" + pw + "&sslmode=disable"
		case 3:
			if strings.ContainsAny(pw, " \t\v\f") {
				t.Skip()
			}
			s = "host=h password=" + pw + " dbname=x"
		case 4:
			s = "host=h password='" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(pw) + "' dbname=x"
		case 5:
			if strings.Contains(strings.ToLower(pw), ",nats://") {
				t.Skip()
			}
			s = "nats://h1:4222,nats://bob:" + pw + "@h2:4222"
		case 6:
			if strings.Contains(pw, ":") {
				t.Skip()
			}
			s = "nats://" + pw + "@h:4222"
		case 7:
			s = "redis://:" + pw + "@h:6379/0"
		}
		if got := redact.URL(s); strings.Contains(got, marker) {
			t.Errorf("URL(%q) = %q shows the password", s, got)
		}
	})
}

// wantUnchanged fails t for each address URL does not show byte for byte:
// one with nothing secret in it, whose keys merely look like a secret's.
func wantUnchanged(t *testing.T, addrs ...string) {
	t.Helper()
	for _, in := range addrs {
		if got := redact.URL(in); got != in {
			t.Errorf("URL(%q) = %q, want it unchanged", in, got)
		}
	}
}

// TestURLMasksCredentialQueryKeys: the query keys that commonly carry an API key, a bearer token or a request
// signature (an OTLP collector's or a webhook's ?api_key=, a presigned URL's signature) are masked, while the
// ordinary keys that merely share a fragment of those names are shown as they are.
func TestURLMasksCredentialQueryKeys(t *testing.T) {
	for _, key := range []string{
		"api_key", "apikey", "API-Key", "x-api-key", "key", "auth", "access_token", "token", "secret",
		"client_secret", "sig", "signature", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
		"access_key", "private_key", "credentials", "authorization",
	} {
		in := "http://collector:4318/v1/traces?a=1&" + key + "=" + secret + "&b=2"
		want := "http://collector:4318/v1/traces?a=1&" + key + "=xxxxx&b=2"
		if got := redact.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	wantUnchanged(t,
		// Ordinary keys: a file path (pgx's sslkey names a file), a MongoDB auth database, a key's name.
		"postgres://h/db?sslkey=/etc/ssl/client.key&sslmode=verify-full&sslcert=/etc/ssl/client.crt",
		"mongodb://h/db?authSource=admin&authMechanism=SCRAM-SHA-256",
		"http://h/path?keyspace=shop&design=1&sigma=2&monkey=3&author=bob",
		"host=h sslkey=/etc/ssl/client.key dbname=x",
	)
}

// TestURLMasksTheOtherSpellingsOfAPassword: pass= (a camera's or a queue's
// ?user=bob&pass=) and passphrase= (a key's) hold a password as plainly as
// password= does, and were shown; pass only as a whole name, since it
// begins passfile (pgx's path to a .pgpass file) and ends bypass.
func TestURLMasksTheOtherSpellingsOfAPassword(t *testing.T) {
	for _, key := range []string{"pass", "PASS", "passphrase", "ssl_passphrase", "key-passphrase"} {
		in := "rtsp://camera:554/stream?user=bob&" + key + "=" + secret + "&b=2"
		want := "rtsp://camera:554/stream?user=bob&" + key + "=xxxxx&b=2"
		if got := redact.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	wantUnchanged(t,
		"postgres://h/db?passfile=/home/bob/.pgpass&sslmode=disable",
		"host=h passfile=/home/bob/.pgpass dbname=x",
		"http://h/p?bypass=1&compass=north&passthrough=on",
	)
}

// TestURLMasksSecretParametersInTheFragment: a fragment may carry
// parameters as a query does (an OAuth implicit grant's
// #access_token=...&expires_in=3600, a webhook's #token=), and a secret
// there was shown, alone or after a query; the rest of a fragment is shown
// as it was, and a password's unencoded '#' still ends nothing.
func TestURLMasksSecretParametersInTheFragment(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://h/cb#access_token=" + secret + "&state=1&expires_in=3600", "https://h/cb#access_token=xxxxx&state=1&expires_in=3600"},
		{"https://h/cb?state=1#access_token=" + secret, "https://h/cb?state=1#access_token=xxxxx"},
		{"https://h/hook#x=1&token=" + secret, "https://h/hook#x=1&token=xxxxx"},
		{"https://h/hook?a=1#x=1;sig=" + secret, "https://h/hook?a=1#x=1;sig=xxxxx"},
		{"https://h/p#section-2", "https://h/p#section-2"},
		{"https://h/p?a=1#b=2", "https://h/p?a=1#b=2"},
		// A password with an unencoded '#': masked whole, as before.
		{"postgres://h/db?password=ab#c=" + secret + "&sslmode=disable", "postgres://h/db?password=xxxxx&sslmode=disable"},
		{"postgres://h/db?password=ab#" + secret, "postgres://h/db?password=xxxxx"},
	} {
		if got := redact.URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestURLMasksBearerJWTAndSessionParameters: a bearer token, a JWT and a
// session id are as much a credential as token= (an SSE or WebSocket URL's
// ?jwt=, a callback's ?session=, a servlet's ;jsessionid= turned
// parameter), and were shown. session counts only as a whole name (and in
// sessionid, sessid): as a part it would take libpq's target_session_attrs.
func TestURLMasksBearerJWTAndSessionParameters(t *testing.T) {
	for _, key := range []string{
		"jwt", "JWT", "id_jwt", "jwt_assertion", "bearer", "Bearer", "bearer_token", "session", "Session",
		"sessionid", "session_id", "JSESSIONID", "PHPSESSID",
	} {
		in := "wss://events:443/stream?a=1&" + key + "=" + secret + "&b=2"
		want := "wss://events:443/stream?a=1&" + key + "=xxxxx&b=2"
		if got := redact.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		kv := "host=h " + key + "=" + secret + " dbname=x"
		if got := redact.URL(kv); got != "host=h "+key+"=xxxxx dbname=x" {
			t.Errorf("URL(%q) = %q, want the %s value masked", kv, got, key)
		}
	}
	wantUnchanged(t,
		"postgres://h1,h2/db?target_session_attrs=read-write&sslmode=disable",
		"host=h1,h2 target_session_attrs=read-write dbname=x",
		"http://h/p?session_timeout=30s&sessions=4",
	)
}
