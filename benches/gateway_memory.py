#!/usr/bin/env python3
"""The gateway's resident memory against the number of distinct tokens it has seen.

The hour-long soak (docs/performance.md#the-soak) saw `tollgate gateway`'s VmRSS grow in steps,
from 22 to 43 MiB. This asks where that goes: a release gateway in front of a trivial nginx
upstream is sent DISTINCT tokens (EdDSA, minted here with the gateway's key, each used once, over
one keep-alive connection), and its VmRSS is read every STEP tokens. The same is done with the
verified-token cache off (`[validation] cache_verified_tokens = 0`), so the difference is the
cache's; the cache is bounded (10,000 entries by default), so with it on the memory must level
off after 10,000 tokens, and with it off it must not grow at all.

Needs: nginx (Debian's, /usr/sbin/nginx), python3 with `cryptography`. The tollgate binary is
$TOLLGATE_BIN or target/release/tollgate, built if missing. Run from anywhere:
    python3 benches/gateway_memory.py                 # 40,000 tokens, a sample every 2,500
    python3 benches/gateway_memory.py --tokens 20000 --step 1000
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ISSUER = "https://issuer.test"
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")


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


def run(binary, work, minter, tokens, step, cache):
    port, ops = free_port(), free_port()
    config = os.path.join(work, f"gateway-{cache}.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\nissuer = "{ISSUER}"\naudience = ["{ISSUER}"]\n'
                f'[keys]\nfiles = [{{ kid = "k1", algorithm = "EdDSA", file = "{work}/k1.der" }}]\n'
                f'[validation]\ncache_verified_tokens = {cache}\n'
                f'[ops]\nlisten = "127.0.0.1:{ops}"\n'
                f'[[upstreams]]\nname = "app"\nurl = "http://127.0.0.1:{UPSTREAM}"\n'
                '[[routes]]\nprefix = "/"\n')
    gateway = subprocess.Popen([binary, "gateway", "--config", config],
                               env={**os.environ, "RUST_LOG": "warn"},
                               stdout=subprocess.DEVNULL, stderr=open(f"{config}.log", "w"))
    try:
        wait_for(port, "the gateway")
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
    nginx_dir = os.path.join(work, "upstream")
    os.makedirs(os.path.join(nginx_dir, "tmp"))
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write(f"worker_processes 1;\nevents {{ worker_connections 1024; }}\n"
                f"http {{ access_log off; client_body_temp_path {nginx_dir}/tmp; "
                f"server {{ listen 127.0.0.1:{UPSTREAM}; location / {{ return 200 \"ok\\n\"; }} }} }}\n")
    nginx = subprocess.Popen([NGINX, "-p", nginx_dir, "-c", f"{nginx_dir}/nginx.conf",
                              "-g", f"daemon off; pid {nginx_dir}/nginx.pid; error_log stderr;"])
    try:
        wait_for(UPSTREAM, "nginx")
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
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
