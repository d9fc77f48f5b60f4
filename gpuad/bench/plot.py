"""`--plot`: throughput vs size per implementation (log-log, one panel per kernel), a bar chart of time
ratios to the reference, and peak memory per variant, from a bench result (the JSON's content)."""
from __future__ import annotations

import math


def _throughput(record: dict, median: float) -> tuple[float, str]:
    if record.get("bytes"):
        return record["bytes"] / median / 1e9, "GB/s (minimal bytes)"
    if record.get("flops"):
        return record["flops"] / median / 1e9, "GFLOP/s"
    return record["size"] / median / 1e9, "G elements/s"


def plot(result: dict, path: str) -> None:
    """Write the figure for `result` to `path` (PNG, matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in result["results"] if r["kind"] == "time"]
    by_case: dict[str, list[dict]] = {}
    for r in timed:
        if r["suite"] == "kernels":
            by_case.setdefault(r["case"], []).append(r)
    memory = [r for r in result["results"] if r["kind"] == "memory"]
    panels = len(by_case) + len(memory)
    cols = 3
    rows = math.ceil(panels / cols)
    fig = plt.figure(figsize=(6 * cols, 4.2 * rows + 6))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[4.2] * rows + [6])
    flat = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(rows * cols)]
    flat.insert(len(by_case), fig.add_subplot(grid[rows, :]))  # the ratio bars span the last row
    bandwidth = result["machine"].get("copy_bandwidth_gbs")
    for ax, (case, records) in zip(flat, by_case.items()):
        unit = ""
        for name in records[0]["impls"]:
            points = sorted((r["size"], *_throughput(r, r["impls"][name]["median"])) for r in records
                            if name in r["impls"])
            unit = points[0][2]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        if records[0].get("bytes") and bandwidth:
            ax.axhline(bandwidth, color="gray", linestyle="--", label=f"copy bandwidth {bandwidth:.1f} GB/s")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("elements")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = flat[len(by_case)]
    labels, ratios = [], []
    for r in timed:
        sizes = [x["size"] for x in by_case.get(r["case"], [])]
        if r["suite"] == "kernels" and r["size"] not in (min(sizes), max(sizes)):
            continue
        ref = r["impls"][r["reference"]]["median"]
        for name, t in r["impls"].items():
            if name.startswith("gpuad"):
                size = f" n={r['size']}" if r["suite"] == "kernels" else ""
                labels.append(f"{r['case']}{size}: {name}")
                ratios.append(t["median"] / ref)
    ax.barh(range(len(ratios)), ratios, color=["tab:green" if v <= 1 else "tab:red" for v in ratios])
    ax.set_yticks(range(len(ratios)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time / reference time (<1 faster)")
    ax.set_title("gpuad vs each case's reference (smallest and largest size)", fontsize=10)
    for ax, r in zip(flat[len(by_case) + 1:], memory):
        names = list(r["impls"])
        values = [r["impls"][n]["peak_bytes"] / 2**20 for n in names]
        ax.bar(range(len(names)), values, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=7, ha="right")
        ax.set_ylabel("peak MiB above start")
        ax.set_title(r["case"], fontsize=9)
    for ax in flat[panels + 1:]:
        ax.axis("off")
    m = result["machine"]
    fig.suptitle(f"gpuad bench on {result['device']}: {m.get('gpu') or m['processor']}, {m['cpus']} cpus, "
                 f"{m['date']}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
