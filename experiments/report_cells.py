"""Top-1 of every system in each degradation, and each degradation x length cell, of an
`acr evaluate` report, with the hybrid's margin over the best single engine.

    python experiments/report_cells.py REPORT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HYBRID = "hybrid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="an acr evaluate --output REPORT.json")
    report = json.loads(parser.parse_args().report.read_text())
    systems = report["systems"]
    names = list(systems)
    singles = [name for name in names if name != HYBRID]
    cells = [key for key in systems[names[0]] if key == "overall" or key.startswith("degradation=")]
    print(f"{'cell':38s} {'queries':>7s} " + " ".join(f"{name:>11s}" for name in names), end="")
    print("  hybrid - best single" if HYBRID in systems and singles else "")
    for cell in cells:
        top1 = {name: systems[name][cell]["top1"] for name in names}
        row = f"{cell.removeprefix('degradation='):38s} {systems[names[0]][cell]['queries']:7d} "
        row += " ".join(f"{top1[name]:11.3f}" for name in names)
        if HYBRID in systems and singles:
            row += f"  {top1[HYBRID] - max(top1[name] for name in singles):+.3f}"
        print(row)


if __name__ == "__main__":
    main()
