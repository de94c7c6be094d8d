#!/usr/bin/env python3
"""The gateway's resident memory against the number of distinct tokens it has seen.

The hour-long soak (docs/performance.md#the-soak) saw `tollgate gateway`'s VmRSS grow in steps,
from 22 to 43 MiB. This asks where that goes: a release gateway in front of a trivial nginx
upstream is sent DISTINCT tokens (EdDSA, minted here with the gateway's key, each used once, over
one keep-alive connection), and its VmRSS is read every STEP tokens. The same is done with the
verified-token cache off (`[validation] cache_verified_tokens = 0`), so the difference is the
cache's; the cache is bounded (10,000 entries by default), so with it on the memory must level
off after 10,000 tokens, and with it off it must not grow at all.

Then, with --held N (1,000 by default; 0 skips it), the memory of an open connection: N
keep-alive HTTP/1.1 connections, one request answered on each, held open, VmRSS before and after,
over plain HTTP and over TLS (`[tls]`, an openssl-made P-256 certificate); the difference between
the two is what TLS adds to a connection.

Needs: nginx (Debian's, /usr/sbin/nginx), openssl, python3 with `cryptography`. The tollgate
binary is $TOLLGATE_BIN or target/release/tollgate, built if missing. Run from anywhere:
    python3 benches/gateway_memory.py                 # 40,000 tokens, a sample every 2,500
    python3 benches/gateway_memory.py --tokens 20000 --step 1000 --held 0
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ISSUER = "https://issuer.test"
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
# The upstream's port, set before the upstream and the gateways start.
UPSTREAM = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"gateway_memory: {what} never listened on {port}")


class Minter:
    """EdDSA access tokens signed with the key file `tollgate keygen` wrote."""

    def __init__(self, der_path):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        # PKCS#8 v2 (RFC 5958, with the public key), which `cryptography` does not read: the
        # 32-byte seed is the OCTET STRING inside the privateKey OCTET STRING.
        with open(der_path, "rb") as f:
            der = f.read()
        if der[12:16] != b"\x04\x22\x04\x20":
            sys.exit(f"gateway_memory: {der_path} is not an Ed25519 key of `tollgate keygen`")
        self.key = Ed25519PrivateKey.from_private_bytes(der[16:48])
        self.header = b64(json.dumps({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}).encode())

    def token(self):
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "alice", "aud": ISSUER, "client_id": "app", "iat": now,
                  "exp": now + 3600, "jti": uuid.uuid4().hex, "scope": "read"}
        signing_input = f"{self.header}.{b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64(self.key.sign(signing_input.encode()))}"


def start_upstream(work):
    """The trivial upstream: nginx answering 200 "ok" on UPSTREAM; the process, listening."""
    nginx_dir = os.path.join(work, "upstream")
    os.makedirs(os.path.join(nginx_dir, "tmp"))
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write(f"worker_processes 1;\nevents {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; keepalive_requests 1000000; "
                f"client_body_temp_path {nginx_dir}/tmp; "
                f"server {{ listen 127.0.0.1:{UPSTREAM}; location / {{ return 200 \"ok\\n\"; }} }} }}\n")
    nginx = subprocess.Popen([NGINX, "-p", nginx_dir, "-c", f"{nginx_dir}/nginx.conf",
                              "-g", f"daemon off; pid {nginx_dir}/nginx.pid; error_log stderr;"])
    wait_for(UPSTREAM, "nginx")
    return nginx


def start_gateway(binary, work, name, tables):
    """A gateway in front of the upstream, with these extra TOML `tables`; (process, port)."""
    port, ops = free_port(), free_port()
    config = os.path.join(work, f"gateway-{name}.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\nissuer = "{ISSUER}"\naudience = ["{ISSUER}"]\n'
                f'[keys]\nfiles = [{{ kid = "k1", algorithm = "EdDSA", file = "{work}/k1.der" }}]\n'
                f'{tables}[ops]\nlisten = "127.0.0.1:{ops}"\n'
                f'[[upstreams]]\nname = "app"\nurl = "http://127.0.0.1:{UPSTREAM}"\n'
                '[[routes]]\nprefix = "/"\n')
    gateway = subprocess.Popen([binary, "gateway", "--config", config],
                               env={**os.environ, "RUST_LOG": "warn"},
                               stdout=subprocess.DEVNULL, stderr=open(f"{config}.log", "w"))
    wait_for(port, "the gateway")
    return gateway, port


def per_connection(binary, work, token, held, tls):
    """KiB of VmRSS per open keep-alive connection (one request answered on each)."""
    tables = "[limits]\nmax_connections = 100000\n"
    if tls:
        tables += f'[tls]\ncertificate = "{work}/tls.crt"\nprivate_key = "{work}/tls.key"\n'
    gateway, port = start_gateway(binary, work, "tls" if tls else "plain", tables)
    context = ssl.create_default_context(cafile=f"{work}/tls.crt")
    context.set_alpn_protocols(["http/1.1"])
    request = f"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    connections = []
    try:
        time.sleep(0.5)
        before = rss_kib(gateway.pid)
        for _ in range(held):
            s = socket.create_connection(("127.0.0.1", port))
            if tls:
                s = context.wrap_socket(s, server_hostname="localhost")
            s.sendall(request)
            answer = b""
            while not answer.endswith(b"ok\n"):
                chunk = s.recv(4096)
                if not chunk:
                    sys.exit(f"gateway_memory: closed after {len(connections)} connections")
                answer += chunk
            connections.append(s)
        time.sleep(1)
        after = rss_kib(gateway.pid)
        return (after - before) / held
    finally:
        for s in connections:
            s.close()
        gateway.terminate()
        gateway.wait()


def run(binary, work, minter, tokens, step, cache):
    gateway, port = start_gateway(binary, work, f"cache-{cache}",
                                  f"[validation]\ncache_verified_tokens = {cache}\n")
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        samples = [(0, rss_kib(gateway.pid))]
        for i in range(1, tokens + 1):
            connection.request("GET", "/", headers={"Authorization": f"Bearer {minter.token()}"})
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                sys.exit(f"gateway_memory: token {i} answered {answer.status}")
            if i % step == 0:
                samples.append((i, rss_kib(gateway.pid)))
        return samples
    finally:
        gateway.terminate()
        gateway.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=40000)
    ap.add_argument("--step", type=int, default=2500)
    ap.add_argument("--held", type=int, default=1000, help="connections held open (0: skip)")
    args = ap.parse_args()
    binary = os.environ.get("TOLLGATE_BIN", os.path.join(ROOT, "target/release/tollgate"))
    if not os.path.exists(binary):
        subprocess.run(["cargo", "build", "--release", "-p", "tollgate-server"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="gateway-memory-", dir=os.path.join(ROOT, "target"))
    subprocess.run([binary, "keygen", "--kid", "k1", "--out", os.path.join(work, "k1.der")],
                   check=True, stdout=subprocess.DEVNULL)
    minter = Minter(os.path.join(work, "k1.der"))

    global UPSTREAM
    UPSTREAM = free_port()
    nginx = start_upstream(work)
    try:
        held = {}
        if args.held:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key", "-out",
                            "tls.crt", "-days", "2", "-subj", "/CN=localhost", "-addext",
                            "subjectAltName=DNS:localhost"],
                           cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for tls in (False, True):
                held[tls] = per_connection(binary, work, minter.token(), args.held, tls)
        results = {}
        for cache in (10000, 0):
            started = time.time()
            results[cache] = run(binary, work, minter, args.tokens, args.step, cache)
            print(f"cache_verified_tokens = {cache}: {args.tokens} tokens in "
                  f"{time.time() - started:.0f} s", file=sys.stderr)
    finally:
        nginx.terminate()
        nginx.wait()
    print("| distinct tokens seen | VmRSS, cache 10,000 (default) | VmRSS, cache off | difference |")
    print("|---|---|---|---|")
    for (n, on), (_, off) in zip(results[10000], results[0]):
        print(f"| {n:,} | {on / 1024:.1f} MiB | {off / 1024:.1f} MiB | {(on - off) / 1024:+.1f} MiB |")
    if held:
        print(f"\nper open keep-alive connection ({args.held} held, one request answered on each): "
              f"plain HTTP {held[False]:.1f} KiB, TLS {held[True]:.1f} KiB "
              f"(TLS adds {held[True] - held[False]:.1f} KiB)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
