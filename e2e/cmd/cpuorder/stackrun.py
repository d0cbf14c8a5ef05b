"""What cpuorder.py and rates.py share: the real servers' variables (scripts/deps.sh env), the stack of the
platform's binaries (e2e/cmd/stack -load) started on them, and the CPU time of its parts read from /proc.

Imported by the two scripts beside it (Python puts a script's own directory on its path).
"""
import glob, os, re, signal, subprocess, sys, time

CLK = os.sysconf("SC_CLK_TCK")

# The shared brokers, by name and the pgrep -f pattern that finds each server's process.
BROKERS = [("nats", "nats-server"), ("kafka", "kafka.Kafka"), ("pulsar", "PulsarStandaloneStarter")]


def deps_env(root):
    """This environment plus the connection variables scripts/deps.sh of ROOT prints."""
    env = dict(os.environ)
    out = subprocess.run([os.path.join(root, "scripts/deps.sh"), "env"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"(?:export )?(\w+)=['\"]?([^'\"]*)['\"]?", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


def start(root, out, env, extra=(), wait=900):
    """Builds e2e/cmd/stack and e2e/cmd/loadgen from ROOT into OUT/bin, starts the stack (-load, logs in OUT/logs,
    its stderr in OUT/stack.err, extra: more stack flags) in a process group of its own, and waits at most WAIT
    seconds for its gateway address and payments subject. Returns (bindir, process, gateway, subject); exits with
    the tail of the stack's stderr when it does not come up."""
    bindir = out + "/bin"
    os.makedirs(out + "/logs", exist_ok=True)
    subprocess.run(["go", "build", "-o", bindir + "/", "./e2e/cmd/stack", "./e2e/cmd/loadgen"], cwd=root, check=True, env=env)
    st = subprocess.Popen([bindir + "/stack", "-load", "-logs", out + "/logs", *extra], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=open(out + "/stack.err", "w"), text=True, start_new_session=True)
    gw = subj = None
    # The stack builds its binaries before it prints anything: on a loaded machine that alone took over 300 s.
    deadline = time.time() + wait
    while time.time() < deadline and not (gw and subj):
        line = st.stdout.readline()
        if not line:
            break
        if line.startswith("gateway"):
            gw = line.split()[1]
        if line.startswith("payments subjects"):
            subj = line.split()[2]
    if not gw or not subj:
        print("stack failed (gateway %s, payments subjects %s)" % (gw, subj), open(out + "/stack.err").read()[-2000:],
              file=sys.stderr)
        stop(st)
        sys.exit(1)
    return bindir, st, gw, subj


def stop(st):
    """Stops the stack's whole process group: a stack left running holds the platform's lock and blocks later runs."""
    try:
        os.killpg(st.pid, signal.SIGINT)
        st.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(st.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children(pid):
    """The child processes of PID, by command name (the stack's five binaries)."""
    res = {}
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            f = open(p).read()
        except OSError:
            continue
        if int(f[f.rindex(")") + 2:].split()[1]) == pid:
            res[f[f.index("(") + 1:f.rindex(")")]] = int(p.split("/")[2])
    return res


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def cpu(pid):
    """User plus system CPU seconds of PID, None once it has gone."""
    try:
        f = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = f[f.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def psql(url, q):
    return subprocess.run(["psql", url, "-Atc", q], capture_output=True, text=True).stdout


def backends(env):
    """The PostgreSQL backends serving the stack's databases: pid → the database's part (user, order, payment)."""
    res = {}
    for line in psql(env["DATABASE_URL"], "select pid, datname from pg_stat_activity where datname like 'stack_%'").splitlines():
        pid, dat = line.split("|")
        res[int(pid)] = dat.rsplit("_", 1)[1]
    return res


def brokers():
    """The shared brokers' server processes that run: name → pid."""
    res = {}
    for name, pat in BROKERS:
        r = subprocess.run(["pgrep", "-f", pat], capture_output=True, text=True).stdout.split()
        if r:
            res[name] = int(r[0])
    return res


def machine_busy():
    """CPU seconds the whole machine has spent not idle (nor waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return (sum(t) - t[3] - t[4]) / CLK


def order_db_url(env):
    """The URL of the stack's order database."""
    db = psql(env["DATABASE_URL"], "select datname from pg_database where datname like 'stack_%_order'").split()[0]
    return env["DATABASE_URL"].replace("/shanhai?", "/" + db + "?")
