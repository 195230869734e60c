"""The results as the issue asks for them: the table of a load run (throughput, latency
percentiles, 4xx, 5xx, errors and the cores busy), and the verdicts against the issue's
targets (2 cores, file backend) with the 5xx of every phase."""

from __future__ import annotations

TARGETS = {"p50_ms_at_1_client": 30.0, "queries_per_s_at_16_clients": 40.0}  # 2 cores, files


def table(rows: list[dict], title: str = "") -> str:
    """The issue's columns, and the cores busy: server / client / other processes."""
    lines = [title] if title else []
    lines += ["| clients | requests | q/s | p50 ms | p95 ms | p99 ms | 4xx | 5xx | errors "
              "| cores busy: server / client / other |", "|---" * 10 + "|"]  # fmt: skip
    for row in rows:
        cores = row.get("cores_busy", {})
        lines.append(
            f"| {row['clients']} | {row['requests']} | {row['queries_per_s']} | {row['p50_ms']} "
            f"| {row['p95_ms']} | {row['p99_ms']} | {row['4xx']} | {row['5xx']} | {row['errors']} "
            f"| {cores.get('server')} / {cores.get('client')} / {cores.get('other')}"
            + (f" (database {cores['database']})" if "database" in cores else "")
            + " |"
        )
    return "\n".join(lines)


def verdicts(phases: dict) -> tuple[dict, dict]:
    """Which targets the levels met, and the 5xx count of every phase (and level)."""
    rows = {row["clients"]: row for row in phases.get("levels", {}).get("rows", [])}
    met = {}
    if 1 in rows:
        met["p50_ms_at_1_client"] = rows[1]["p50_ms"] <= TARGETS["p50_ms_at_1_client"]
    if 16 in rows:
        met["queries_per_s_at_16_clients"] = (
            rows[16]["queries_per_s"] >= TARGETS["queries_per_s_at_16_clients"]
        )
    five_hundreds = {f"levels {clients}": row["5xx"] for clients, row in rows.items()}
    for name, phase in phases.items():
        if "5xx" in phase:
            five_hundreds[name] = phase["5xx"]
    for outage, phase in phases.get("database", {}).items():
        five_hundreds[f"database {outage} (503 is the answer while it is down)"] = phase["5xx"]
    return met, five_hundreds
