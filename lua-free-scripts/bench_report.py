"""bench_report.py -- what the reports of bench.sh and bench-transform.sh share.

Imported by their report scripts (PYTHONPATH=lua-free-scripts): reading the
per-run table, the configs in the order they ran, and the closing note on
rounds that other processes disturbed.
"""

import csv
import statistics

med = statistics.median


class Runs:
    """The per-run TSV (one row a wrk run; columns round, id, rps, ...,
    gw_cpu_pct and the cpuN_busy_pct ones) and the results' first lines,
    the meta file's."""

    def __init__(self, raw, meta):
        self.rows = list(csv.DictReader(open(raw), delimiter="\t"))
        self.order = list(dict.fromkeys(r["id"] for r in self.rows))
        self.by = {i: [r for r in self.rows if r["id"] == i]
                   for i in self.order}
        self.base = {r["round"]: r for r in self.rows if r["id"] == "a-plain"}
        self.busy = [c for c in self.rows[0] if c.endswith("_busy_pct")]
        self.out = [open(meta).read().rstrip(), ""]

    def row_head(self, cid):
        """A config's first cells: id, req/s (median, min-max), vs a-plain
        (the median of its ratios round by round), p50 and p99 ms, gw CPU
        us/req; and the cell of its errors (all rounds)."""
        rs = self.by[cid]
        rps = [float(r["rps"]) for r in rs]
        ratio = [float(r["rps"]) / float(self.base[r["round"]]["rps"])
                 for r in rs if r["round"] in self.base]
        errs = sum(int(r["non2xx"]) + int(r["sock_err"]) for r in rs)
        return (
            f"| {cid} | {med(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | "
            + (f"{med(ratio):.3f}" if ratio else "n/a") + " | "
            f"{med(int(r['p50_us']) for r in rs) / 1000:.2f} | "
            f"{med(int(r['p99_us']) for r in rs) / 1000:.2f} | "
            f"{med(float(r['gw_cpu_us']) for r in rs):.1f} | "), f" | {errs} |"

    def busy_header(self):
        return " | ".join(c.replace("_busy_pct", "") + " busy %"
                          for c in self.busy)

    def busy_cells(self, rs):
        return " | ".join(f"{med(float(r[c]) for r in rs):.0f}"
                          for c in self.busy)

    def write(self, outp):
        """Adds the runs where the gateway's core was busier than the
        gateway by more than 10 points, then writes the results to outp
        and stdout."""
        gw_core = self.busy[0] if self.busy else None
        noisy = [f"{r['id']} r{r['round']} "
                 f"({float(r[gw_core]) - float(r['gw_cpu_pct']):.0f}%)"
                 for r in self.rows
                 if gw_core
                 and float(r[gw_core]) - float(r["gw_cpu_pct"]) > 10]
        if noisy:
            self.out.append("")
            self.out.append(f"**Noisy:** other processes used more than 10% of "
                            f"{gw_core.replace('_busy_pct', '')} (the gateway's core) "
                            "during: " + ", ".join(noisy)
                            + ". Re-run on a quiet machine.")
        txt = "\n".join(self.out) + "\n"
        open(outp, "w").write(txt)
        print(txt)
