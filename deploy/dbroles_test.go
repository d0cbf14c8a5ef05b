package deploy

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// dbServices are the binaries with a database of their own (DATABASE_URL).
var dbServices = []string{"user", "order", "payment"}

// TestEachServiceConnectsAsARoleOfItsOwn: in the kind build, with the secrets kind-up.sh generates, each service's
// DATABASE_URL names a role of its own with a password of its own, never PostgreSQL's POSTGRES_USER (the
// superuser the image creates), and the superuser's password is not in the platform's namespace. All three
// connected as that superuser: a compromised order pod could read the user service's password hashes, rewrite
// payment's ledger or run a program in PostgreSQL's container (COPY ... TO PROGRAM).
func TestEachServiceConnectsAsARoleOfItsOwn(t *testing.T) {
	objs := build(t, "k8s/overlays/kind")
	pods, cms := k8sWorkloads(t, objs)
	secretValues := kindUpSecrets(t)
	superuser := postgresEnv(t, objs, secretValues)["POSTGRES_USER"]
	if superuser == "" {
		t.Fatal("the postgres Deployment sets no POSTGRES_USER: follow it here")
	}
	roles, passwords := map[string]string{}, map[string]string{}
	for _, svc := range dbServices {
		u, err := url.Parse(kubeletEnv(t, objs, cms, secretValues, pods[svc])["DATABASE_URL"])
		if err != nil || u.User == nil {
			t.Fatalf("%s: DATABASE_URL names no user (%v)", svc, err)
		}
		role, pw := u.User.Username(), ""
		pw, _ = u.User.Password()
		if role == superuser {
			t.Errorf("%s connects as PostgreSQL's superuser %q", svc, role)
		}
		if other, ok := roles[role]; ok {
			t.Errorf("%s and %s connect as the same role %q", svc, other, role)
		}
		if other, ok := passwords[pw]; ok || pw == "" {
			t.Errorf("%s's password is empty or the same as %s's", svc, other)
		}
		roles[role], passwords[pw] = svc, svc
	}
	for key := range secretValues {
		if strings.HasPrefix(key, "shanhai/") && strings.HasSuffix(key, "/postgres-password") {
			t.Errorf("the platform's namespace holds PostgreSQL's superuser password (%s)", key)
		}
	}
}

// TestPostgresInitGivesEachServiceItsOwnRole runs the kind build's first-start script on a private PostgreSQL as the
// image's entrypoint does (sourced by bash under set -Eeo pipefail, with the postgres container's environment and
// kind-up.sh's secrets), then connects with each service's DATABASE_URL: its role is no superuser, creates tables
// in its own database, and cannot connect to any other database, another service's or the image's own (postgres,
// POSTGRES_DB, template1: PUBLIC could connect to those and create temporary tables there). The user service's
// password is one an operator might choose instead of kind-up.sh's hex, which must reach its role intact.
func TestPostgresInitGivesEachServiceItsOwnRole(t *testing.T) {
	objs := build(t, "k8s/overlays/kind")
	pods, cms := k8sWorkloads(t, objs)
	secretValues := kindUpSecrets(t)
	setServicePassword(t, secretValues, "user", `a'b\c"d :pw :'pw' $(false) `+"`false`"+` ;-- @/%?#`)
	env := postgresEnv(t, objs, secretValues)
	bin := postgresBin(t)
	dir, port := privatePostgres(t, bin, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])

	script := filepath.Join(dir, "init.sh")
	if err := os.WriteFile(script, []byte(postgresInitScript(t, objs)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The entrypoint creates POSTGRES_DB before it runs the scripts, then sources each *.sh.
	cmd := exec.Command("bash", "-c", `set -Eeo pipefail
psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db"'
source "$1"`, "entrypoint", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PGHOST="+dir, "PGPORT="+port)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postgres-init: %v\n%s", err, out)
	}

	psql := func(dsn, sql string) (string, error) {
		out, err := exec.Command(filepath.Join(bin, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, svc := range dbServices {
		u, err := url.Parse(kubeletEnv(t, objs, cms, secretValues, pods[svc])["DATABASE_URL"])
		if err != nil {
			t.Fatal(err)
		}
		u.Host = net.JoinHostPort("127.0.0.1", port)
		out, err := psql(u.String(), "CREATE TABLE probe (id int); SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
		if err != nil {
			t.Errorf("%s: in its own database: %v\n%s", svc, err, out)
		} else if !strings.HasSuffix(out, "f") {
			t.Errorf("%s's role is a superuser or creates roles or databases (%s)", svc, out)
		}
		others := []string{"postgres", env["POSTGRES_DB"], "template1"}
		for _, other := range dbServices {
			if other != svc {
				others = append(others, "shanhai_"+other)
			}
		}
		for _, db := range others {
			v := *u
			v.Path = "/" + db
			if out, err := psql(v.String(), "SELECT 1"); err == nil || !strings.Contains(out, "permission denied") {
				t.Errorf("%s's role connects to the database %s (%v): %s", svc, db, err, out)
			}
		}
	}
}

// setServicePassword makes password svc's in kind-up.sh's secrets: the one its role is created with and the one
// in its DATABASE_URL (percent-encoded there).
func setServicePassword(t *testing.T, secretValues map[string]string, svc, password string) {
	t.Helper()
	key := "shanhai/shanhai-db/" + svc
	u, err := url.Parse(secretValues[key])
	if err != nil || u.User == nil {
		t.Fatalf("%s: no URL with a user (%v)", key, err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	secretValues[key] = u.String()
	secretValues["shanhai-infra/shanhai-db/"+svc+"-password"] = password
}

// postgresEnv is the environment of the kind build's postgres container, a Secret's key read from kind-up.sh's.
func postgresEnv(t *testing.T, objs []object, secretValues map[string]string) map[string]string {
	t.Helper()
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok || o.Name != "postgres" {
			continue
		}
		env := map[string]string{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			switch {
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			case e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				env[e.Name] = secretValues[o.Namespace+"/"+ref.Name+"/"+ref.Key]
			}
		}
		return env
	}
	t.Fatal("no postgres Deployment in the kind build")
	return nil
}

// postgresInitScript is the one file of the ConfigMap the postgres container mounts on /docker-entrypoint-initdb.d.
func postgresInitScript(t *testing.T, objs []object) string {
	t.Helper()
	var name string
	for _, o := range objs {
		if d, ok := o.Value.(*appsv1.Deployment); ok && o.Name == "postgres" {
			spec := d.Spec.Template.Spec
			for _, m := range spec.Containers[0].VolumeMounts {
				if m.MountPath != "/docker-entrypoint-initdb.d" {
					continue
				}
				for _, v := range spec.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil {
						name = v.ConfigMap.Name
					}
				}
			}
		}
	}
	for _, o := range objs {
		if cm, ok := o.Value.(*corev1.ConfigMap); ok && name != "" && o.Name == name {
			if len(cm.Data) != 1 {
				t.Fatalf("ConfigMap %s holds %d files: run each here as the entrypoint does", name, len(cm.Data))
			}
			for k, v := range cm.Data {
				if !strings.HasSuffix(k, ".sh") {
					t.Fatalf("%s/%s: not a script the entrypoint sources", name, k)
				}
				return v
			}
		}
	}
	t.Fatal("the postgres container mounts no ConfigMap on /docker-entrypoint-initdb.d")
	return ""
}

// postgresBin is the directory of the PostgreSQL server binaries scripts/deps.sh installs.
func postgresBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatal("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): run scripts/deps.sh up")
	return ""
}

// privatePostgres starts a PostgreSQL of the test's own, its superuser named as the image's and reached by password
// over TCP (trust on its socket, as the image's first start has it), and returns its directory (and socket) and
// port. initdb and pg_ctl refuse root: as root they run as the postgres user, as scripts/deps.sh does.
func privatePostgres(t *testing.T, bin, superuser, password string) (dir, port string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "dbroles")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var runas []string
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		runas = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(name string, args ...string) {
		t.Helper()
		argv := append(append(runas[:len(runas):len(runas)], filepath.Join(bin, name)), args...)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	data := filepath.Join(dir, "data")
	run("initdb", "-D", data, "-U", superuser, "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8")
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "start", "-o",
		"-c listen_addresses=127.0.0.1 -c port="+port+" -c unix_socket_directories="+dir+" -c fsync=off")
	t.Cleanup(func() { run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	return dir, port
}

// TestKindUpStopsOnAPostgresWithoutRoles: on a cluster whose PostgreSQL was initialised before the services had roles
// (its secret holds the superuser's password alone), kind-up.sh says so and stops before it writes the services'
// URLs, which would name roles that PostgreSQL does not have (its first-start script runs on an empty volume only),
// and before it builds the images: it stopped only after building all six, minutes lost on every such run.
func TestKindUpStopsOnAPostgresWithoutRoles(t *testing.T) {
	state := t.TempDir()
	old := filepath.Join(state, "shanhai-infra", "shanhai-db")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "postgres-password"), []byte("initialised-before"), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerCalls := filepath.Join(t.TempDir(), "docker")
	out, err := runKindUpWith(t, state, "", map[string]string{"docker": "#!/bin/sh\necho \"$*\" >>'" + dockerCalls + "'\n"})
	if err == nil || !strings.Contains(string(out), "kind-down.sh") {
		t.Fatalf("kind-up.sh on a PostgreSQL without roles: %v\n%s", err, out)
	}
	if calls, _ := os.ReadFile(dockerCalls); strings.Contains(string(calls), "build") {
		t.Errorf("kind-up.sh built the images before it stopped:\n%s", calls)
	}
	if _, err := os.Stat(filepath.Join(state, "shanhai", "shanhai-db")); err == nil {
		t.Error("kind-up.sh wrote the services' database URLs for roles PostgreSQL does not have")
	}
}
