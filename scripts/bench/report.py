#!/usr/bin/env python3
"""Print the bench table from the per-repetition CSV written by scripts/bench.sh.

Usage: report.py RESULTS.csv

CSV columns: figure,tool,rep,seconds,work,unit,status
  - rate figures: value = work / seconds per repetition (MiB/s, files/s, reads/s), median shown
  - time figures: value = seconds per repetition, median shown (in ms or s)
  - memory: work = peak RSS in MiB of one daemon; the maximum over all mounts is shown
  status is "ok" or "FAIL" (tool error or wrong data); a failed repetition is not used.
Ratios are taken between medians of the same run (the machine is noisy; compare ratios).
"""
import csv
import statistics
import sys
from collections import defaultdict

# base figure -> (kind, display unit, reference tool(s), ratio kind, target, target text)
#   ratio kinds: "rate/ref" (ftpfs rate / ref rate, higher is better),
#                "time/ref" (ftpfs time / ref time, lower is better),
#                "rate/best-rclone", "speed/best-rclone" (rclone best time / ftpfs time)
FIGURES = [
    ("seq-read", "rate", "MiB/s", "curl", "rate/ref", 0.95, ">=0.95 x curl"),
    ("seq-write", "rate", "MiB/s", "curl", "rate/ref", 0.90, ">=0.90 x curl -T"),
    ("ls-cold", "time", "ms", "curl", "time/ref", 1.5, "<=1.5 x curl LIST"),
    ("ls-warm", "time", "ms", "local", "time/ref", 3.0, "<=3 x local ls -l"),
    ("small-seq", "rate", "files/s", None, "rate/best-rclone", 1.0, ">1 x best rclone"),
    ("small-p8", "rate", "files/s", None, "rate/best-rclone", 1.0, ">1 x best rclone"),
    ("random-read", "rate", "reads/s", None, "rate/best-rclone", 1.0, ">1 x best rclone"),
    ("tree-out", "time", "s", None, "speed/best-rclone", 1.0, ">1 x best rclone"),
    ("tree-in", "time", "s", None, "speed/best-rclone", 1.0, ">1 x best rclone"),
]
TOOLS = ["ftpfs", "curl", "local", "rclone-off", "rclone-full"]


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "ms":
        v = v * 1000
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main(path):
    reps = defaultdict(list)  # (figure, tool) -> values
    fails = defaultdict(int)
    mem = defaultdict(float)
    with open(path) as f:
        for row in csv.DictReader(f):
            fig, tool = row["figure"], row["tool"]
            if row["status"] != "ok":
                fails[(fig, tool)] += 1
                continue
            if fig == "memory":
                mem[tool] = max(mem[tool], float(row["work"]))
                continue
            if not row["seconds"] or float(row["seconds"]) <= 0:
                continue
            reps[(fig, tool)].append((float(row["seconds"]), float(row["work"])))

    figs_present = sorted({k[0] for k in reps} | {k[0] for k in fails}, key=order_key)
    header = ["figure", "unit", "ftpfs", "curl/local", "rclone-off", "rclone-full", "ratio", "target", ""]
    rows = [header]
    verdicts = []
    for fig in figs_present:
        base = fig.split("@")[0]
        spec = next((s for s in FIGURES if s[0] == base), None)
        if spec is None:
            continue
        _, kind, unit, ref, rkind, target, ttext = spec

        def med(tool, fig=fig):
            vals = reps.get((fig, tool))
            if not vals and tool == "local" and fig != base:
                vals = reps.get((base, tool))  # ls-warm@rttN: the local ls has no RTT
            if not vals:
                return None
            if kind == "rate":
                return statistics.median(w / s for s, w in vals)
            return statistics.median(s for s, _ in vals)

        m = {t: med(t) for t in TOOLS}
        ratio = None
        rtext = "-"
        f = m["ftpfs"]
        if f is not None:
            if rkind == "rate/ref" and m[ref]:
                ratio = f / m[ref]
                rtext = "%.2f x %s" % (ratio, ref)
            elif rkind == "time/ref" and m[ref]:
                ratio = f / m[ref]
                rtext = "%.2f x %s" % (ratio, ref)
            elif rkind in ("rate/best-rclone", "speed/best-rclone"):
                rc = [v for v in (m["rclone-off"], m["rclone-full"]) if v]
                if rc:
                    if rkind == "rate/best-rclone":
                        ratio = f / max(rc)
                    else:
                        ratio = min(rc) / f
                    rtext = "%.2f x rclone" % ratio
        ok = "?"
        if ratio is not None:
            if rkind == "time/ref":
                ok = "ok" if ratio <= target else "BEHIND"
            elif rkind.endswith("best-rclone"):
                ok = "ok" if ratio > target else "BEHIND"
            else:
                ok = "ok" if ratio >= target else "BEHIND"
        if any(fails.get((fig, t)) for t in TOOLS):
            ok = "FAIL " + ",".join(t for t in TOOLS if fails.get((fig, t)))
        refcol = m["curl"] if m["curl"] is not None else m["local"]
        rows.append([fig, unit, fmt(m["ftpfs"], unit), fmt(refcol, unit), fmt(m["rclone-off"], unit),
                     fmt(m["rclone-full"], unit), rtext, ttext, ok])
        verdicts.append(ok)
        if base == "ls-cold" and f is not None and reps.get((fig, "curl-mlsd")):
            mm = statistics.median(x for x, _ in reps[(fig, "curl-mlsd")])
            rows.append(["  (vs MLSD)", unit, fmt(f, unit), fmt(mm, unit), "", "", "%.2f x curl MLSD" % (f / mm),
                         "info", ""])
    if mem:
        peak = mem.get("ftpfs")
        ok = "?" if peak is None else ("ok" if peak <= 64 else "BEHIND")
        rows.append(["peak RSS", "MiB", fmt(peak, "MiB"), "-", fmt(mem.get("rclone-off"), "MiB"),
                     fmt(mem.get("rclone-full"), "MiB"), "-", "<=64 MiB (ftpfs)", ok])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) if j == 0 or j >= 6 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def order_key(fig):
    base, _, rtt = fig.partition("@")
    idx = next((i for i, s in enumerate(FIGURES) if s[0] == base), 99)
    return (1 if rtt else 0, idx, fig)


if __name__ == "__main__":
    main(sys.argv[1])
