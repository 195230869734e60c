"""The stages of ``acr pipeline``: what each one reads, does and writes under OUTPUT.

A stage is a function of a :class:`StageContext` (the plan, the outputs of the stages before
it, whether to resume) that returns its own outputs, name -> path. ``settings`` lists what its
outputs depend on besides the outputs of ``depends_on``; ``digested`` names the output files
whose content the stages after it depend on. acr.runs.pipeline runs them in order and skips the
current ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from acr.data.checks import summary_line, validate_manifest_dir
from acr.data.inspection import inspect_audio
from acr.data.manifests import ManifestError, read_table, resolve_paths, write_table
from acr.data.query_sets import QUERIES_FILE, make_queries
from acr.datamodules.base import QUERIES_FILE as SOURCE_QUERIES_FILE
from acr.datamodules.base import TRACKS_FILE
from acr.datamodules.sources import catalog_source, prepare_manifests
from acr.files import write_json
from acr.retrieval.build import build_index
from acr.retrieval.evaluation import evaluate_index
from acr.retrieval.fitting import fit_fusion
from acr.retrieval.recognizer import FUSION_FILE
from acr.retrieval.store import INDEX_FILE
from acr.runs.pipeline_fit import fit_settings, fit_stage
from acr.runs.pipeline_plan import VALIDATION_SEED_OFFSET, Plan, Stage, StageContext
from acr.runs.reports import write_report


# -- inspect, prepare, validate ----------------------------------------------------------------
def inspect_stage(context: StageContext) -> dict[str, str]:
    """Headers of the audio (counts, hours, formats, unreadable files) into inspect.json."""
    plan = context.plan
    if plan.source == "synthetic":
        audio = Path(context.upstream["prepare"]["manifest_dir"]) / "audio"
        report = inspect_audio(audio, workers=plan.workers)
    else:
        listed = catalog_source(plan.source, plan.root, plan.source_options).list_tracks()
        splits = listed["split"].tolist() if "split" in listed else None
        paths = [Path(path) for path in listed["path"]]
        report = inspect_audio(
            plan.root, paths=paths, splits=splits, source=plan.source, workers=plan.workers
        )
    path = plan.output / "inspect.json"
    write_json(path, report)
    print(
        f"  {report['files']} audio files, {report['hours']:.2f} h, "
        f"{report['unreadable']} unreadable"
    )
    return {"inspection": str(path)}


def inspect_settings(plan: Plan) -> dict[str, Any]:
    if plan.source == "synthetic":
        return {"source": plan.source}  # the generated audio is the prepare stage's output
    return {
        "source": plan.source,
        "options": plan.source_options,
        "collection": plan.collection_digest,
    }


def prepare_stage(context: StageContext) -> dict[str, str]:
    """The fit's manifests (synthetic: generated songs; other sources: catalog and split tables)
    and index_catalog.csv, the held-out tracks to index and query."""
    plan = context.plan
    if plan.source == "synthetic":
        plan.datamodule.prepare_data()
        manifests = plan.datamodule.manifest_dir
        tracks = resolve_paths(read_table(manifests / TRACKS_FILE), manifests, ["path"])
        # Songs unseen in training; a synthetic set has no test split.
        held_out = tracks[(tracks["split"] == "val") & (tracks["role"] == "reference")]
        outputs = {
            "manifest_dir": str(manifests),
            "tracks_table": str(manifests / TRACKS_FILE),
            "fit_validation_queries": str(manifests / SOURCE_QUERIES_FILE),
        }
    else:
        prepared = prepare_manifests(
            plan.source,
            str(plan.root),
            str(plan.output / "manifests"),
            plan.source_options,
            probe_workers=plan.workers,
        )
        held_out = prepared.catalog[prepared.catalog["split"] == "test"]
        outputs = {"manifest_dir": str(prepared.directory)}
        outputs |= {f"{name}_table": str(path) for name, path in prepared.files.items()}
    if held_out.empty:
        raise ManifestError(outputs["manifest_dir"], "no held-out track to index and query")
    if plan.catalog_tracks is not None and plan.catalog_tracks < len(held_out):
        held_out = held_out.sample(n=plan.catalog_tracks, random_state=plan.seed).sort_index()
    write_table(held_out, plan.catalog_path)
    print(f"  {len(held_out)} held-out tracks to index: {plan.catalog_path}")
    return {**outputs, "catalog": str(plan.catalog_path)}


def prepare_settings(plan: Plan) -> dict[str, Any]:
    held_out = {"catalog_tracks": plan.catalog_tracks, "seed": plan.seed}
    if plan.source == "synthetic":
        return {**held_out, "manifest_dir": str(plan.datamodule.manifest_dir)}
    return {
        **held_out,
        "source": plan.source,
        "options": plan.source_options,
        "collection": plan.collection_digest,
    }


def prepared_tables(plan: Plan) -> tuple[str, ...]:
    """The prepare outputs later stages depend on: the tables, not the folders."""
    if plan.source == "synthetic":
        return ("tracks_table", "fit_validation_queries", "catalog")
    return ("catalog_table", "train_table", "val_table", "test_table", "catalog")


def validate_stage(context: StageContext) -> dict[str, str]:
    """Every problem of the manifests (files decode to their durations, no leakage) into
    validate.json; a problem stops the pipeline before it trains on broken data."""
    plan = context.plan
    manifests = Path(context.upstream["prepare"]["manifest_dir"])
    report = validate_manifest_dir(
        str(manifests), sample=plan.validate_sample, seed=plan.seed, workers=plan.workers
    )
    path = plan.output / "validate.json"
    write_json(path, report)
    if not report["ok"]:
        raise ManifestError(manifests, f"{summary_line(report)}; every problem is in {path}")
    print(f"  {summary_line(report)}")
    return {"validation_report": str(path)}


# -- index, queries, fuse, evaluate, report ------------------------------------------------------
def index_stage(context: StageContext) -> dict[str, str]:
    """The held-out catalog indexed with the fitted checkpoint; an interrupted build resumes
    from its last snapshot."""
    plan = context.plan
    resume = context.resume and (plan.index_dir / INDEX_FILE).is_file()
    if not resume:
        shutil.rmtree(plan.index_dir, ignore_errors=True)
    build_index(
        str(plan.catalog_path),
        str(plan.index_dir),
        engine=plan.engine,
        checkpoint=context.upstream["fit"]["checkpoint"],
        resume=resume,
        workers=plan.workers,
        save_every=plan.index_save_every,
    )
    return {"index": str(plan.index_dir), "index_manifest": str(plan.index_dir / INDEX_FILE)}


def index_settings(plan: Plan) -> dict[str, Any]:
    return {"engine": plan.engine}


def queries_stage(context: StageContext) -> dict[str, str]:
    """Two sets of degraded excerpts of the indexed tracks, drawn with different seeds: one to
    fit the fusion on, one to report; with ``field_queries`` a third, the test excerpts damaged
    by the field suite's independent generators, reported beside the test set."""
    plan = context.plan
    outputs = {}
    sets = [("validation", plan.seed + VALIDATION_SEED_OFFSET, "acr"), ("test", plan.seed, "acr")]
    if plan.field_queries:
        sets.append(("field", plan.seed, "field"))
    else:  # a field set of an earlier run is not this run's
        shutil.rmtree(plan.output / "queries" / "field", ignore_errors=True)
    for name, seed, suite in sets:
        folder = plan.output / "queries" / name
        shutil.rmtree(folder, ignore_errors=True)  # no clip of an earlier set stays behind
        table = make_queries(
            str(plan.catalog_path),
            str(folder),
            lengths_s=plan.query_lengths_s,
            degradations=plan.query_degradations,
            per_track=plan.queries_per_track,
            seed=seed,
            sample_rate=plan.datamodule.sample_rate,
            max_tracks=plan.query_tracks,
            workers=plan.workers,
            suite=suite,
        )
        if table.empty:
            raise ManifestError(
                plan.catalog_path, f"no {name} query could be made: {table.attrs['skipped'][:3]}"
            )
        print(f"  {len(table)} {name} queries: {folder / QUERIES_FILE}")
        outputs[f"{name}_queries"] = str(folder / QUERIES_FILE)
    return outputs


def queries_settings(plan: Plan) -> dict[str, Any]:
    return {
        "lengths_s": plan.query_lengths_s,
        "degradations": plan.query_degradations,
        "per_track": plan.queries_per_track,
        "max_tracks": plan.query_tracks,
        "seed": plan.seed,
        "sample_rate": plan.datamodule.sample_rate,
        "field": plan.field_queries,
    }


def fuse_stage(context: StageContext) -> dict[str, str]:
    """The hybrid index's fusion (calibration, weights, early exit), fitted on the validation
    queries, never on the reported ones."""
    index = context.upstream["index"]["index"]
    _, count = fit_fusion(index, [context.upstream["queries"]["validation_queries"]])
    print(f"  fitted on {count} validation queries")
    return {"fusion": str(Path(index) / FUSION_FILE)}


def evaluate_stage(context: StageContext) -> dict[str, str]:
    """Top-1, top-k and MRR per engine and fused, per bucket, with bootstrap intervals, on the
    test queries (and on the field suite's, with ``field_queries``)."""
    plan = context.plan
    outputs = {}
    for name, output, file in (
        ("test", "evaluation", "report.json"),
        ("field", "field_evaluation", "report-field.json"),
    ):
        path = plan.output / "evaluate" / file
        queries = context.upstream["queries"].get(f"{name}_queries")
        if queries is None:  # no field queries asked for; an earlier run's report goes
            path.unlink(missing_ok=True)
            continue
        evaluate_index(
            context.upstream["index"]["index"],
            queries,
            output=str(path),
            top_k=plan.top_k,
            bootstrap=plan.bootstrap,
            seed=plan.seed,
        )
        outputs[output] = str(path)
    return outputs


def evaluate_settings(plan: Plan) -> dict[str, Any]:
    return {"top_k": plan.top_k, "bootstrap": plan.bootstrap, "seed": plan.seed}


def report_stage(context: StageContext) -> dict[str, str]:
    """Benchmark, model card, release checklist and artifact manifest of the fit, with the
    evaluation's numbers."""
    paths = write_report(
        context.upstream["fit"]["fit_dir"],
        output=str(context.plan.output / "report"),
        evaluation=context.upstream["evaluate"]["evaluation"],
    )
    named = {"manifest": "artifact_manifest"}  # not to be taken for the data manifests
    return {"report": str(context.plan.output / "report")} | {
        named.get(name, name): str(path) for name, path in paths.items()
    }


def validate_settings(plan: Plan) -> dict[str, Any]:
    return {"sample": plan.validate_sample, "seed": plan.seed}


def no_settings(plan: Plan) -> dict[str, Any]:
    return {}


def hybrid(plan: Plan) -> bool:
    """Fusion needs two engines or more."""
    return plan.engine == "hybrid"


# name, run, settings, depends_on, digested (the outputs whose content later stages read)
CHAIN = [
    Stage("validate", validate_stage, validate_settings, ("prepare",), ("validation_report",)),
    Stage("fit", fit_stage, fit_settings, ("prepare",), ("checkpoint",), resumable=True),
    Stage(
        "index", index_stage, index_settings, ("prepare", "fit"), ("index_manifest",),
        resumable=True,
    ),
    Stage(
        "queries", queries_stage, queries_settings, ("prepare",),
        ("validation_queries", "test_queries", "field_queries"),
    ),
    Stage("fuse", fuse_stage, no_settings, ("index", "queries"), ("fusion",), needed=hybrid),
    Stage(
        "evaluate", evaluate_stage, evaluate_settings, ("index", "queries", "fuse"),
        ("evaluation", "field_evaluation"),
    ),
    Stage("report", report_stage, no_settings, ("fit", "evaluate")),
]  # fmt: skip


def stages(plan: Plan) -> list[Stage]:
    """The chain in order. Synthetic audio exists only once prepared, so it is inspected then;
    a collection on disk is inspected first, before the slower probing of prepare. validate is
    a gate, not an input: it must pass before the fit, but a rerun of it retrains nothing."""
    synthetic = plan.source == "synthetic"
    inspect = Stage(
        "inspect",
        inspect_stage,
        inspect_settings,
        depends_on=("prepare",) if synthetic else (),
        digested=("inspection",),
    )
    prepare = Stage("prepare", prepare_stage, prepare_settings, digested=prepared_tables(plan))
    return [*([prepare, inspect] if synthetic else [inspect, prepare]), *CHAIN]
