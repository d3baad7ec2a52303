"""Print one markdown table from the eval folders scripts/eval_real.sh writes (OUT/<dataset>/<policy>/<method>.json).

Usage: .venv/bin/python scripts/results_table.py [runs/real]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: Path) -> None:
    print("| dataset | policy | method | n | EM | F1 | cover-EM | searches | answered |")
    print("|---|---|---|---|---|---|---|---|---|")
    for table in sorted(root.glob("*/*/*.json")):
        groups = json.loads(table.read_text())
        m = groups.get("all") or next(iter(groups.values()))
        dataset, policy, method = table.parent.parent.name, table.parent.name, table.stem
        print(
            f"| {dataset} | {policy} | {method} | {int(m['n'])} | {m['em']:.3f} | {m['f1']:.3f} | {m['cover_em']:.3f} "
            f"| {m['searches']:.2f} | {m['answered']:.2f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/real"))
