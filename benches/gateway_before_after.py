#!/usr/bin/env python3
"""Two `tollgate gateway` binaries, back to back, with browser-like requests.

For a change on the gateway's request path (header handling, say): each binary in turn, ROUNDS
times, serves wrk (-t2 -c64, DURATION) through the same nginx upstream with the same EdDSA token
and thirteen headers a browser or an SPA sends (cookies, `Sec-Ch-Ua*`, `Sec-Fetch-*`,
`X-Requested-With`...), the verified-token cache at its default. Prints each round and
after/before over the sums: on a 2-core machine a round varies by about 10 %, so only the sums
mean anything.

Needs: wrk, nginx (/usr/sbin/nginx), python3 with `cryptography`. Build the old binary in a
worktree of its own (`git worktree add ../old <rev>`, `cargo build --release -p tollgate-server`
there), then:
    python3 benches/gateway_before_after.py ../old/target/release/tollgate target/release/tollgate
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_memory as gm  # noqa: E402  (the minter, the gateway and nginx helpers)

BROWSER = [
    "Accept: text/html,application/xhtml+xml", "Accept-Language: en-GB,en;q=0.9",
    "Cache-Control: no-cache", "Cookie: session=abc123; theme=dark",
    "Sec-Ch-Ua: \"Chromium\";v=\"131\"", "Sec-Ch-Ua-Mobile: ?0", "Sec-Ch-Ua-Platform: \"Linux\"",
    "Sec-Fetch-Mode: navigate", "Sec-Fetch-Site: none", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
    "X-Requested-With: XMLHttpRequest", "X-Correlation-Id: 0f3e",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10s")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gateway-before-after-", dir=os.path.join(gm.ROOT, "target"))
    subprocess.run([args.after, "keygen", "--kid", "k1", "--out", f"{work}/k1.der"], check=True,
                   stdout=subprocess.DEVNULL)
    headers = ["Authorization: Bearer " + gm.Minter(f"{work}/k1.der").token()] + BROWSER
    gm.UPSTREAM = gm.free_port()
    nginx = gm.start_upstream(work)
    binaries = {"before": args.before, "after": args.after}
    rates = {name: [] for name in binaries}
    try:
        for round_ in range(1, args.rounds + 1):
            for name, binary in binaries.items():
                gateway, port = gm.start_gateway(binary, work, name, "")
                try:
                    time.sleep(0.5)
                    command = ["wrk", "-t2", "-c64", f"-d{args.duration}"]
                    for header in headers:
                        command += ["-H", header]
                    out = subprocess.run(command + [f"http://127.0.0.1:{port}/"],
                                         capture_output=True, text=True, check=True).stdout
                    if "Non-2xx" in out:
                        sys.exit(f"gateway_before_after: {name} answered other than 200:\n{out}")
                    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                    rates[name].append(rate)
                    print(f"round {round_} {name}: {rate:,.0f} req/s", flush=True)
                finally:
                    gateway.terminate()
                    gateway.wait()
    finally:
        nginx.terminate()
        nginx.wait()
    before, after = sum(rates["before"]), sum(rates["after"])
    print(f"sums: before {before:,.0f}, after {after:,.0f} req/s; after/before {after / before:.3f}")


if __name__ == "__main__":
    main()
