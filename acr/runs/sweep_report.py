"""A sweep's outputs: sweep.json (everything), sweep.md (tables and verdicts), plots/*.png."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from acr.files import write_json
from acr.runs.analysis import aggregate, comparisons
from acr.runs.environment import machine
from acr.runs.plots import plot_top1_by_bucket, single_buckets

if TYPE_CHECKING:
    from acr.runs.sweep import SweepPlan


def build_sweep(plan: SweepPlan, results: list[dict], failures: list, samples: int) -> dict:
    """The whole sweep as one JSON-ready dict."""
    summary = aggregate(results)
    return {
        "name": plan.name,
        "config": plan.config,
        "seeds": plan.seeds,
        "grid": {key: values for key, values in plan.grid},
        "source": "validation" if plan.evaluation is None else "evaluate",
        "machine": machine(),
        "runs": [
            {key: result[key] for key in ("run", "arm", "seed", "grid", "command", "seconds")}
            for result in results
        ],
        "failed": [{"run": run.name, "error": error} for run, error in failures],
        "summary": summary,
        "comparisons": comparisons(results, plan.varied, samples),
    }


def write_sweep(plan: SweepPlan, results: list[dict], failures: list, samples: int) -> dict:
    """sweep.json, sweep.md and one plot per system under ``plan.output``."""
    sweep = build_sweep(plan, results, failures, samples)
    systems = sorted({system for arm in sweep["summary"].values() for system in arm})
    plots = []
    for system in systems:
        path = plan.output / "plots" / f"top1_{system}.png"
        title = f"{plan.name}: top-1 of {system} per bucket ({len(plan.seeds)} seeds)"
        plots.append(plot_top1_by_bucket(results, sweep["summary"], system, path, title))
    sweep["plots"] = [str(path.relative_to(plan.output)) for path in plots]
    write_json(plan.output / "sweep.json", sweep, indent=1)
    (plan.output / "sweep.md").write_text(sweep_markdown(sweep))
    return sweep


def sweep_markdown(sweep: dict) -> str:
    lines = [
        f"# Sweep {sweep['name']}",
        "",
        f"- config: `{sweep['config']}`; seeds {sweep['seeds']}; results from {sweep['source']}",
        f"- grid: {sweep['grid'] or 'none'}",
        f"- machine: {sweep['machine']}",
        f"- runs: {len(sweep['runs'])} finished, {len(sweep['failed'])} failed",
        "",
        "Each cell: mean over seeds ± sample std [95 % interval: for top-k the wider of the",
        "seeds' Student-t interval and the Wilson interval of all seeds' queries pooled; for",
        "MRR the Student-t interval].",
        "",
    ]
    for failure in sweep["failed"]:
        lines.append(f"- **failed** {failure['run']}: {failure['error']}")
    for arm, systems in sweep["summary"].items():
        for system, buckets in systems.items():
            lines += _summary_table(arm, system, buckets)
    if sweep["comparisons"]:
        lines += ["## Comparisons (top-1, paired on seeds and queries)", ""]
        lines += [
            "Difference is B − A with its 95 % bootstrap interval (seeds and queries resampled);",
            "the verdict uses Holm-adjusted p-values over the buckets of one comparison.",
            "",
        ]
        for comparison in sweep["comparisons"]:
            lines += _comparison_table(comparison)
    lines += [f"![{path}]({path})" for path in sweep.get("plots", [])]
    return "\n".join(lines) + "\n"


def _summary_table(arm: str, system: str, buckets: dict) -> list[str]:
    rows = [
        f"## {arm} — {system}",
        "",
        "| bucket | queries | top-1 | top-5 | MRR |",
        "|---|---|---|---|---|",
    ]
    for bucket in single_buckets(list(buckets)):
        metrics = buckets[bucket]
        cells = [_cell(metrics.get(name)) for name in ("top1", "top5", "mrr")]
        rows.append(f"| {bucket} | {metrics.get('queries', '')} | " + " | ".join(cells) + " |")
    return rows + [""]


def _cell(summary: dict | None) -> str:
    if not summary:
        return ""
    low, high = summary["ci95"]
    if "pooled95" in summary:  # a proportion: never zero-width where seeds agree, within [0, 1]
        low = max(0.0, min(low, summary["pooled95"][0]))
        high = min(1.0, max(high, summary["pooled95"][1]))
    return f"{summary['mean']:.3f} ± {summary['std']:.3f} [{low:.3f}, {high:.3f}]"


def _comparison_table(comparison: dict) -> list[str]:
    where = comparison.get("system") or comparison.get("arm")
    rows = [
        f"### {comparison['factor']}: A = {comparison['a']} vs B = {comparison['b']} ({where})",
        "",
        f"{len(comparison['seeds'])} seeds × {comparison['queries']} shared queries.",
        "",
        "| bucket | A | B | B − A [95 % CI] | p (Holm) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for bucket, result in comparison["buckets"].items():
        if "difference" not in result:
            rows.append(f"| {bucket} | | | | | {result['verdict']} |")
            continue
        low, high = result["ci95"]
        rows.append(
            f"| {bucket} | {result['mean_a']:.3f} | {result['mean_b']:.3f} | "
            f"{result['difference']:+.3f} [{low:+.3f}, {high:+.3f}] | {result['p_holm']:.3g} | "
            f"{result['verdict']} |"
        )
    return rows + [""]


def log_sweep_to_wandb(sweep: dict, output: Path, mode: str) -> Path | None:
    """One W&B run of job type ``sweep-summary`` in the sweep's group: the per-arm and the
    comparison tables and the plots, so the grouped view shows the sweep as one dashboard."""
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project="acr",
        group=sweep["name"],
        job_type="sweep-summary",
        name=f"{sweep['name']}/summary",
        dir=str(output),
        mode=mode,
        config={"config": sweep["config"], "seeds": sweep["seeds"], "grid": sweep["grid"]},
        reinit="finish_previous",
    )
    arms = wandb.Table(columns=["arm", "system", "bucket", "queries", "top1_mean", "top1_std",
                                "top1_ci_low", "top1_ci_high", "seeds"])  # fmt: skip
    for arm, systems in sweep["summary"].items():
        for system, buckets in systems.items():
            for bucket, metrics in buckets.items():
                top1 = metrics["top1"]
                arms.add_data(arm, system, bucket, metrics["queries"], top1["mean"], top1["std"],
                              *top1["ci95"], top1["seeds"])  # fmt: skip
    verdicts = wandb.Table(columns=["factor", "context", "a", "b", "bucket", "difference",
                                    "ci_low", "ci_high", "p_holm", "verdict"])  # fmt: skip
    for comparison in sweep["comparisons"]:
        context = comparison.get("system") or comparison.get("arm")
        for bucket, result in comparison["buckets"].items():
            if "difference" in result:
                verdicts.add_data(comparison["factor"], context, comparison["a"], comparison["b"],
                                  bucket, result["difference"], *result["ci95"],
                                  result["p_holm"], result["verdict"])  # fmt: skip
    images = {
        f"plots/{Path(path).stem}": wandb.Image(str(output / path)) for path in sweep["plots"]
    }
    run.log({"arms": arms, "comparisons": verdicts, **images})
    directory = Path(run.dir).parent
    run.finish()
    return directory
