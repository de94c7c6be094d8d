#!/usr/bin/env python3
"""Draws soak.json (benches/soak/soak.py) as one PNG: throughput and p99 through the gateway,
resident memory and open files of every tollgate process, and non-2xx answers per window, with
the faults marked on every panel.

    python3 benches/soak/plot.py soak.json soak.png     (needs matplotlib)
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source, target):
    data = json.load(open(source))
    windows, samples = data["windows"], data["samples"]
    faults = data["summary"]["faults"]
    minutes = lambda t: t / 60
    fig, axes = plt.subplots(5, 1, figsize=(12, 15), sharex=True)
    wt = [minutes(w["t"]) for w in windows]

    axes[0].plot(wt, [w["rate"] for w in windows], drawstyle="steps-post")
    axes[0].set_ylabel("gateway req/s")
    axes[1].plot(wt, [w["p99_ms"] for w in windows], drawstyle="steps-post", color="tab:orange")
    axes[1].set_ylabel("gateway p99 (ms)")
    for name in ("serve-a", "serve-b", "gateway", "app"):
        pts = [(minutes(s["t"]), s[name]) for s in samples if s.get(name) and s[name][0] is not None]
        if pts:
            axes[2].plot([p[0] for p in pts], [p[1][0] for p in pts], label=name)
            axes[3].plot([p[0] for p in pts], [p[1][1] for p in pts], label=name)
    axes[2].set_ylabel("VmRSS (MiB)")
    axes[2].legend(loc="upper left", fontsize="small")
    axes[3].set_ylabel("open files")
    axes[3].legend(loc="upper left", fontsize="small")
    axes[4].bar(wt, [w["non2xx"] for w in windows], width=minutes(10) * 0.9, align="edge", color="tab:red")
    # Token requests that failed: answered 503 (the store could not commit), or not answered
    # (the replica was down: the load then asks the other one).
    failures = data.get("issue_failures", [])
    for status, style, label in ((503, "r|", "token request answered 503"),
                                 (0, "k|", "token request to a stopped replica")):
        at = [minutes(f[0]) for f in failures if (f[2] == 503) == (status == 503)]
        if at:
            axes[4].plot(at, [0] * len(at), style, markersize=12, label=label)
    if failures:
        axes[4].legend(loc="upper left", fontsize="small")
    axes[4].set_ylabel("gateway non-2xx per window")
    axes[4].set_xlabel("minutes")
    for ax in axes:
        ax.grid(alpha=0.3)
        for f in faults:
            ax.axvline(minutes(f["t"]), color="black", linestyle="--", linewidth=0.8)
    for f in faults:
        axes[0].annotate(f["what"].split(" (")[0], (minutes(f["t"]), axes[0].get_ylim()[1]),
                         rotation=90, va="top", ha="right", fontsize="small")
    s = data["summary"]
    fig.suptitle(f"tollgate soak: {s['duration_s'] // 60} min, {s['revocations_acknowledged']} revocations "
                 f"acknowledged, {s['events_lost']} lost; refusal p99 {s['refusal_ms_p99']:.0f} ms, "
                 f"max {s['refusal_ms_max']:.0f} ms" if s["refusal_ms_max"] is not None else "tollgate soak")
    fig.tight_layout()
    fig.savefig(target, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
