#!/usr/bin/env python3
"""The soak: the whole system under mixed load for a chosen duration, with a failover of each
kind along the way, then a check that every acknowledged revocation is refused everywhere.

What runs (all private: free ports, one directory under target/soak/, stopped at the end):
  - PostgreSQL: a primary and a synchronous streaming standby (`synchronous_standby_names`);
  - Redis: a primary, two replicas and three Sentinels;
  - two `tollgate serve` replicas on that PostgreSQL (a multi-host URL with
    target_session_attrs=read-write), following Redis through the Sentinels; one holds the
    publisher lease;
  - `tollgate gateway` in front of a trivial nginx upstream, and an axum app whose Layer follows
    Redis (examples/redis_follower.rs), both through the Sentinels.

The load: wrk against the gateway in back-to-back windows (throughput, p99, non-2xx per window,
with a fresh token each window), a probe of the Layer app, and a revoker that issues a token at
one replica or the other and revokes it (about REVOKE_RATE per second). Every revocation answered
200 is recorded, then checked: refused by the gateway and the app within seconds (the time to
refusal is kept), and at the end refused by both again and reported inactive by both replicas'
introspection.

The faults, at a quarter, half and three quarters of the duration: the Redis primary killed
(SIGKILL; the Sentinels promote a replica), the PostgreSQL primary killed and its standby promoted
(the promoted one then commits alone: `synchronous_standby_names` cleared, as an operator would),
and the serve replica holding the publisher lease killed (restarted 30 s later).

The picture (PNG): throughput and p99 through the gateway, resident memory and open files of every
tollgate process, 503s per window, with the faults marked. The figures: events lost (must be 0),
the longest time from a revocation's 200 to its refusal, 503s around each fault.

Run (the release binary and example are built if missing; matplotlib is installed into a venv
under target/):
    python3 benches/soak/soak.py --duration 3600 --out docs/soak
    python3 benches/soak/soak.py --duration 300            # a short rehearsal
"""

import argparse
import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SVC = ("svc", "svc-secret-0123456789")
ISSUER = "http://127.0.0.1:8080"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Processes:
    """Every process the soak starts, by name, stopped at the end."""

    def __init__(self, work):
        self.work = work
        self.procs = {}

    def start(self, name, args, env=None, cwd=None):
        out = open(os.path.join(self.work, f"{name}.log"), "ab")
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        self.procs[name] = proc
        return proc

    def kill(self, name):
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_until(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"soak: {what} did not happen within {timeout} s")


def http(method, url, data=None, auth=None, headers=None, timeout=5):
    """(status, body) of one request; status 0 when the connection failed."""
    req = urllib.request.Request(url, method=method, data=data)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return 0, b""


def claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# --- PostgreSQL: a primary and a synchronous standby -------------------------------------------

def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        sys.exit("soak: PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
    return found[-1]


def as_postgres(args):
    """PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Postgres:
    def __init__(self, work):
        # As root, the data lives in a directory of the postgres user's (PostgreSQL wants its
        # data directory owned by the user it runs as, and reachable by it).
        self.work = tempfile.mkdtemp(prefix="tollgate-soak-pg-") if os.geteuid() == 0 else work
        if os.geteuid() == 0:
            shutil.chown(self.work, "postgres")
        self.primary = os.path.join(self.work, "pg-primary")
        self.standby = os.path.join(self.work, "pg-standby")
        self.primary_port = free_port()
        self.standby_port = free_port()

    def ctl(self, data, *args):
        subprocess.run(as_postgres([pg_bin("pg_ctl"), "-D", data, "-w", "-l", data + ".log", *args]),
                       check=True, stdout=subprocess.DEVNULL)

    def append(self, path, text):
        subprocess.run(as_postgres(["sh", "-c", f"cat >> {path}"]), input=text, text=True, check=True)

    def start(self):
        subprocess.run(as_postgres([pg_bin("initdb"), "-D", self.primary, "-U", "tollgate", "--auth", "trust"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.append(os.path.join(self.primary, "postgresql.conf"),
                    f"port = {self.primary_port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.work}'\nwal_level = replica\n"
                    "max_wal_senders = 5\nsynchronous_commit = on\nfsync = on\n")
        self.ctl(self.primary, "start")
        self.psql(self.primary_port, "CREATE DATABASE tollgate")
        subprocess.run(as_postgres([pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port),
                                    "-U", "tollgate", "-D", self.standby, "-R", "-X", "stream",
                                    "--checkpoint=fast"]), check=True)
        self.append(os.path.join(self.standby, "postgresql.auto.conf"),
                    f"primary_conninfo = 'host=127.0.0.1 port={self.primary_port} user=tollgate "
                    "application_name=standby'\n")
        self.append(os.path.join(self.standby, "postgresql.conf"), f"port = {self.standby_port}\n")
        self.ctl(self.standby, "start")
        # Synchronous only once the standby is there (before, every commit would wait for it).
        self.psql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = 'standby'")
        self.psql(self.primary_port, "SELECT pg_reload_conf()")
        wait_until("the standby streaming synchronously", lambda: "sync" in self.psql(
            self.primary_port, "SELECT sync_state FROM pg_stat_replication"))

    def psql(self, port, sql, db="postgres"):
        return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "tollgate", "-d", db,
                               "-Atc", sql], check=True, capture_output=True, text=True).stdout

    def url(self):
        return (f"postgresql://tollgate@127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
                "/tollgate?target_session_attrs=read-write")

    def fail_over(self):
        """Kills the primary (immediate stop: no shutdown checkpoint, as a crash) and promotes
        the standby, which then commits alone."""
        self.ctl(self.primary, "stop", "-m", "immediate")
        self.ctl(self.standby, "promote")
        self.psql(self.standby_port, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self.psql(self.standby_port, "SELECT pg_reload_conf()")

    def stop(self):
        for data in (self.primary, self.standby):
            subprocess.run(as_postgres([pg_bin("pg_ctl"), "-D", data, "stop", "-m", "fast"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.work.startswith(tempfile.gettempdir()):
            shutil.rmtree(self.work, ignore_errors=True)


# --- Redis: a primary, two replicas, three Sentinels -------------------------------------------

class Redis:
    def __init__(self, work, procs):
        self.work, self.procs = work, procs
        self.ports = [free_port() for _ in range(3)]
        self.sentinels = [free_port() for _ in range(3)]

    def start(self):
        for i, port in enumerate(self.ports):
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.work]
            if i:
                args += ["--replicaof", "127.0.0.1", str(self.ports[0])]
            self.procs.start(f"redis-{port}", args)
        for port in self.sentinels:
            conf = os.path.join(self.work, f"sentinel-{port}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {self.work}\n"
                        f"sentinel monitor main 127.0.0.1 {self.ports[0]} 2\n"
                        "sentinel down-after-milliseconds main 2000\n"
                        "sentinel failover-timeout main 10000\n")
            self.procs.start(f"sentinel-{port}", ["redis-server", conf, "--sentinel"])
        # Each replica a Sentinel knows is one entry with an "ip" field.
        wait_until("the Sentinels to see both replicas", lambda: all(
            self.cli(s, "SENTINEL", "replicas", "main").splitlines().count("ip") >= 2
            for s in self.sentinels))

    def cli(self, port, *args):
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                              text=True, timeout=5).stdout

    def url(self):
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{nodes}/main"

    def primary(self):
        out = self.cli(self.sentinels[0], "SENTINEL", "get-master-addr-by-name", "main").split()
        return int(out[1])

    def fail_over(self):
        old = self.primary()
        self.procs.kill(f"redis-{old}")
        wait_until("the Sentinels to promote a replica", lambda: self.primary() != old, timeout=60)
        return old


# --- the tollgate processes ----------------------------------------------------------------------

def built(path, *cargo):
    if not os.path.exists(path):
        log(f"building {os.path.relpath(path, ROOT)}")
        subprocess.run(["cargo", *cargo], cwd=ROOT, check=True)
    return path


def serve_config(work, name, port, metrics, pg_url, redis_url):
    demo = open(os.path.join(ROOT, "examples", "tollgate.toml")).read().splitlines()
    out = []
    for line in demo:
        if line.startswith("listen ="):
            out.append(f'listen = "127.0.0.1:{port}"\nstore = "postgres"')
        elif line.startswith("data_dir ="):
            out.append(f'data_dir = "{work}/{name}-data"')
        else:
            out.append(line)
    out.append(open(os.path.join(work, "keys.toml")).read())
    out.append(f'[postgres]\nurl = "{pg_url}"\n')
    out.append(f'[replication]\nredis_url = "{redis_url}"\n')
    out.append(f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n')
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def rss_and_files(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, StopIteration, ProcessLookupError):
        return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=3600, help="seconds of load (default 3600)")
    ap.add_argument("--window", type=int, default=10, help="seconds per wrk window")
    ap.add_argument("--revoke-rate", type=float, default=5.0, help="revocations per second")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections")
    ap.add_argument("--out", default=None, help="where to write soak.png and soak.json")
    args = ap.parse_args()
    for tool in ("wrk", "redis-server", "redis-cli", "psql", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"soak: {tool} not found (apt-get install wrk redis-server postgresql nginx)")

    work = os.path.join(ROOT, "target", "soak", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(work)
    out_dir = os.path.abspath(args.out) if args.out else work
    os.makedirs(out_dir, exist_ok=True)
    # Copies of the binaries: a build during the run must not change what a restart starts.
    bin_ = os.path.join(work, "tollgate")
    shutil.copy2(built(os.path.join(ROOT, "target/release/tollgate"), "build", "--release", "-p", "tollgate-server"), bin_)
    app_bin = os.path.join(work, "redis_follower")
    shutil.copy2(built(os.path.join(ROOT, "target/release/examples/redis_follower"),
                       "build", "--release", "--example", "redis_follower", "--features", "axum"), app_bin)
    venv = os.path.join(ROOT, "target", "soak-venv")
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "matplotlib==3.9.2"], check=True)

    procs = Processes(work)
    pg = Postgres(work)
    redis = Redis(work, procs)
    try:
        log(f"work directory {work}")
        pg.start()
        redis.start()
        subprocess.run([bin_, "keygen", "--kid", "soak", "--out", os.path.join(work, "soak.der")],
                       check=True, stdout=open(os.path.join(work, "keys.toml"), "w"))
        replicas = {}
        for name in ("serve-a", "serve-b"):
            port, metrics = free_port(), free_port()
            path = serve_config(work, name, port, metrics, pg.url(), redis.url())
            replicas[name] = {"port": port, "metrics": metrics, "config": path}
            procs.start(name, [bin_, "serve", "--config", path], env={"RUST_LOG": "info"})
        for name, r in replicas.items():
            wait_until(f"{name} to serve", lambda r=r: http("GET", f"http://127.0.0.1:{r['port']}/.well-known/jwks.json")[0] == 200)

        up_port = free_port()
        nginx_dir = os.path.join(work, "upstream")
        os.makedirs(os.path.join(nginx_dir, "tmp"))
        with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
            f.write(f"worker_processes 1;\nevents {{ worker_connections 1024; }}\n"
                    f"http {{ access_log off; client_body_temp_path {nginx_dir}/tmp; "
                    f"server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n")
        procs.start("upstream", ["/usr/sbin/nginx", "-p", nginx_dir, "-c", f"{nginx_dir}/nginx.conf",
                                 "-g", f"daemon off; pid {nginx_dir}/nginx.pid; error_log stderr;"])
        gw_port, gw_ops = free_port(), free_port()
        with open(os.path.join(work, "gateway.toml"), "w") as f:
            f.write(f'listen = "127.0.0.1:{gw_port}"\nissuer = "{ISSUER}"\naudience = ["{ISSUER}"]\n'
                    f'[keys]\nfiles = [{{ kid = "soak", algorithm = "EdDSA", file = "{work}/soak.der" }}]\n'
                    f'[revocations]\nredis_url = "{redis.url()}"\n[ops]\nlisten = "127.0.0.1:{gw_ops}"\n'
                    f'[[upstreams]]\nname = "app"\nurl = "http://127.0.0.1:{up_port}"\n'
                    '[[routes]]\nprefix = "/"\n')
        procs.start("gateway", [bin_, "gateway", "--config", os.path.join(work, "gateway.toml")],
                    env={"RUST_LOG": "info"})
        app_port = free_port()
        procs.start("app", [app_bin], env={
            "REDIS_URL": redis.url(), "ISSUER": ISSUER, "ADDR": f"127.0.0.1:{app_port}",
            "JWKS_URL": f"http://127.0.0.1:{replicas['serve-b']['port']}/.well-known/jwks.json",
            "RUST_LOG": "info"})
        wait_until("the gateway to be ready", lambda: http("GET", f"http://127.0.0.1:{gw_ops}/readyz")[0] == 200)
        targets = {"gateway": f"http://127.0.0.1:{gw_port}/", "app": f"http://127.0.0.1:{app_port}/hello"}

        state = {"stop": False, "faults": [], "windows": [], "samples": [], "revoked": [],
                 "issue_failures": [], "refusal_ms": [], "late": []}
        lock = threading.Lock()
        t0 = time.time()

        def token(timeout=5):
            """A fresh access token from whichever replica answers."""
            for name in sorted(replicas, key=lambda _: os.urandom(1)):
                status, body = http("POST", f"http://127.0.0.1:{replicas[name]['port']}/connect/token",
                                    data=b"grant_type=client_credentials", auth=SVC, timeout=timeout,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
                if status == 200:
                    return json.loads(body)["access_token"], name
                with lock:
                    state["issue_failures"].append((time.time() - t0, name, status))
            return None, None

        def refused_everywhere(tok):
            return all(http("GET", url, headers={"Authorization": f"Bearer {tok}"})[0] == 401
                       for url in targets.values())

        def revoker():
            while not state["stop"]:
                started = time.time()
                tok, name = token()
                if tok:
                    r = replicas[name]
                    status, _ = http("POST", f"http://127.0.0.1:{r['port']}/connect/revocation",
                                     data=urllib.parse.urlencode({"token": tok}).encode(), auth=SVC,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
                    if status == 200:
                        acked = time.time()
                        with lock:
                            state["revoked"].append({"t": acked - t0, "token": tok, "replica": name})
                        threading.Thread(target=watch_refusal, args=(tok, acked), daemon=True).start()
                time.sleep(max(0.0, 1.0 / args.revoke_rate - (time.time() - started)))

        def watch_refusal(tok, acked):
            """The time from the revocation's 200 to its refusal by the gateway and the app."""
            while time.time() - acked < 120:
                if refused_everywhere(tok):
                    with lock:
                        state["refusal_ms"].append(((acked - t0), (time.time() - acked) * 1000))
                    return
                time.sleep(0.05)
            with lock:
                state["late"].append({"t": acked - t0, "token": tok})

        def loader():
            while not state["stop"]:
                tok, _ = token()
                if not tok:
                    time.sleep(1)
                    continue
                start = time.time() - t0
                out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.window}s", "--latency",
                                      "-H", f"Authorization: Bearer {tok}", targets["gateway"]],
                                     capture_output=True, text=True).stdout
                rate = p99 = 0.0
                non2xx = 0
                for line in out.splitlines():
                    parts = line.split()
                    if line.startswith("Requests/sec:"):
                        rate = float(parts[1])
                    elif parts[:1] == ["99%"]:
                        v = parts[1]
                        p99 = float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
                    elif "Non-2xx" in line:
                        non2xx = int(parts[-1])
                app_status = http("GET", targets["app"], headers={"Authorization": f"Bearer {tok}"})[0]
                with lock:
                    state["windows"].append({"t": start, "rate": rate, "p99_ms": p99, "non2xx": non2xx,
                                             "app": app_status})

        def sampler():
            while not state["stop"]:
                row = {"t": time.time() - t0}
                for name in ("serve-a", "serve-b", "gateway", "app"):
                    proc = procs.procs.get(name)
                    if proc and proc.poll() is None:
                        row[name] = rss_and_files(proc.pid)
                with lock:
                    state["samples"].append(row)
                time.sleep(2)

        def lease_holder():
            for name, r in replicas.items():
                status, body = http("GET", f"http://127.0.0.1:{r['metrics']}/metrics")
                if status == 200 and b"tollgate_relay_standby 0" in body:
                    return name
            return "serve-a"

        def faults():
            plan = [(0.25, "Redis primary killed"), (0.5, "PostgreSQL primary killed, standby promoted"),
                    (0.75, "lease holder killed")]
            for at, what in plan:
                while time.time() - t0 < at * args.duration and not state["stop"]:
                    time.sleep(0.5)
                when = time.time() - t0
                log(f"fault: {what}")
                if what.startswith("Redis"):
                    old = redis.fail_over()
                    what += f" (port {old}, new primary {redis.primary()})"
                elif what.startswith("PostgreSQL"):
                    pg.fail_over()
                else:
                    holder = lease_holder()
                    procs.kill(holder)
                    what += f" ({holder}; restarted after 30 s)"
                    time.sleep(30)
                    procs.start(holder, [bin_, "serve", "--config", replicas[holder]["config"]],
                                env={"RUST_LOG": "info"})
                with lock:
                    state["faults"].append({"t": when, "what": what})

        threads = [threading.Thread(target=f, daemon=True) for f in (revoker, loader, sampler, faults)]
        for t in threads:
            t.start()
        log(f"load for {args.duration} s (faults at 25 %, 50 %, 75 %)")
        while time.time() - t0 < args.duration:
            time.sleep(5)
        state["stop"] = True
        for t in threads:
            t.join(timeout=90)
        time.sleep(5)

        # The check: every acknowledged revocation whose token has not expired is refused by the
        # gateway and the app, and inactive at both replicas' introspection.
        log(f"checking {len(state['revoked'])} acknowledged revocations")
        now = time.time()
        accepted = []
        for r in state["revoked"]:
            tok = r["token"]
            if claims(tok)["exp"] <= now + 1:
                continue
            if not refused_everywhere(tok):
                accepted.append(r["t"])
                continue
            for name, rep in replicas.items():
                status, body = http("POST", f"http://127.0.0.1:{rep['port']}/connect/introspect",
                                    data=urllib.parse.urlencode({"token": tok}).encode(), auth=SVC,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
                if status != 200 or json.loads(body).get("active") is not False:
                    accepted.append(r["t"])
                    break
        refusal = sorted(ms for _, ms in state["refusal_ms"])
        pct = lambda q: refusal[min(len(refusal) - 1, int(q * len(refusal)))] if refusal else None
        summary = {
            "duration_s": args.duration,
            "revocations_acknowledged": len(state["revoked"]),
            "events_lost": len(accepted) + len(state["late"]),
            "accepted_at_the_end": accepted,
            "not_refused_within_120_s": [r["t"] for r in state["late"]],
            "refusal_ms_p50": pct(0.5), "refusal_ms_p99": pct(0.99), "refusal_ms_max": refusal[-1] if refusal else None,
            "gateway_requests": sum(w["rate"] * args.window for w in state["windows"]),
            "gateway_non2xx": sum(w["non2xx"] for w in state["windows"]),
            "token_issue_failures": len(state["issue_failures"]),
            "faults": state["faults"],
        }
        with open(os.path.join(out_dir, "soak.json"), "w") as f:
            json.dump({"summary": summary, "windows": state["windows"], "samples": state["samples"],
                       "issue_failures": state["issue_failures"]}, f)
        subprocess.run([os.path.join(venv, "bin", "python"), os.path.join(ROOT, "benches", "soak", "plot.py"),
                        os.path.join(out_dir, "soak.json"), os.path.join(out_dir, "soak.png")], check=True)
        print(json.dumps(summary, indent=2))
        if summary["events_lost"]:
            sys.exit(f"soak: {summary['events_lost']} acknowledged revocations were not refused")
    finally:
        procs.stop_all()
        pg.stop()


if __name__ == "__main__":
    main()
