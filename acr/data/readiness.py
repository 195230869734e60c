"""``acr data check``: is a folder of audio (or a source's listed files) ready to train and test on?

Answers from file headers only (the scan of ``acr data inspect``, acr.data.inspection), so a
large collection is checked in seconds. A track is usable for a query length when it holds
``MARGIN`` times that length (the excerpt with room for a speed-up, acr.augment.degradations);
the folder needs enough such tracks to fill train, val and test splits, and no unreadable files.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from acr.audio import AudioError, AudioInfo, audio_files
from acr.augment.degradations import MARGIN
from acr.data.catalogs import track_id_of
from acr.data.inspection import read_headers, unreadable_files
from acr.data.manifests import SPLITS

# With the shipped split fractions (0.1 val, 0.1 test; acr.data.splits), ten tracks is the
# fewest that gives every split at least one.
MIN_TRACKS = 10
SHOWN_EXAMPLES = 10  # too-short files named in the report (the counts cover them all)


def check_ready(
    root: str | Path,
    query_length_s: float = 3.0,
    paths: list[Path] | None = None,
    splits: list[str | None] | None = None,
    workers: int | None = None,
    min_tracks: int = MIN_TRACKS,
) -> dict[str, Any]:
    """Whether the audio under ``root`` is ready for training and evaluation, and if not, why.

    Args:
        root: a folder of audio, or the root of a source whose files ``paths`` lists.
        query_length_s: the query length to evaluate, in seconds; a track must hold 1.1 times
            it (an excerpt with room for a speed-up).
        paths: the files a source lists (default: every audio file under ``root`` whose path has
            no hidden part, as the folder source sees it).
        splits: each listed file's split (train, val, test or None), to check that every split
            has usable tracks (all None: the split is made later); only with ``paths``.
        workers: header-reading threads (default: one per CPU).
        min_tracks: the fewest tracks long enough for the query length that make train, val and
            test splits.

    Returns:
        JSON-ready: ``ready``, ``reasons`` (empty when ready), ``warnings``, counts of ``files``,
        ``long_enough``, ``too_short``, ``unreadable``, ``hours`` of readable audio, and the
        unreadable files with their reasons.
    """
    start = time.perf_counter()
    if query_length_s <= 0:
        raise ValueError(f"query_length_s must be > 0, got {query_length_s}")
    if min_tracks < 1:
        raise ValueError(f"min_tracks must be >= 1, got {min_tracks}")
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise FileNotFoundError(f"ROOT: {root} does not exist")
    reasons: list[str] = []
    warnings: list[str] = []
    if paths is None:
        if splits is not None:
            raise ValueError("splits: give them with the paths they belong to")
        if not root.is_dir():
            raise FileNotFoundError(f"ROOT: {root} is not a folder")
        paths, hidden = _folder_files(root)
        if hidden:
            warnings.append(
                f"{hidden} hidden audio files (a name starting with '.') are ignored, as the"
                " folder source ignores them"
            )
        reasons += _duplicate_ids(paths, root)
    else:
        paths = [Path(path) for path in paths]
        if splits is not None and len(splits) != len(paths):
            raise ValueError(f"splits: {len(splits)} given for {len(paths)} paths")
    results = read_headers(paths, workers)
    min_duration_s = round(MARGIN * query_length_s, 6)
    infos = [info for info in results if isinstance(info, AudioInfo)]
    long_enough = [info for info in infos if info.duration_s >= min_duration_s]
    too_short = [info for info in infos if info.duration_s < min_duration_s]
    unreadable = unreadable_files(results)
    report: dict[str, Any] = {
        "root": str(root),
        "ready": False,
        "reasons": reasons,
        "warnings": warnings,
        "query_length_s": query_length_s,
        "min_duration_s": min_duration_s,
        "min_tracks": min_tracks,
        "files": len(paths),
        "long_enough": len(long_enough),
        "too_short": len(too_short),
        "unreadable": len(unreadable),
        "hours": round(sum(info.duration_s for info in infos) / 3600, 3),
        "usable_hours": round(sum(info.duration_s for info in long_enough) / 3600, 3),
    }
    length = f"{min_duration_s:g} s ({MARGIN:g} x the {query_length_s:g} s query length)"
    if not paths:
        reasons.append(f"no audio files under {root}")
    elif len(long_enough) < min_tracks:
        reasons.append(
            f"only {len(long_enough)} of {len(paths)} files are at least {length}; train, val"
            f" and test splits need at least {min_tracks}"
        )
    if unreadable:
        reasons.append(
            f"{len(unreadable)} unreadable files (listed in unreadable_files, e.g."
            f" {unreadable[0]['path']}: {unreadable[0]['reason']}): fix or remove them"
        )
    if too_short and len(long_enough) >= min_tracks:
        warnings.append(f"{len(too_short)} files are shorter than {length}: they make no query")
    if splits is not None and any(split is not None for split in splits):
        report["splits"] = _split_counts(splits, results, min_duration_s)
        for split in SPLITS:
            if report["splits"].get(split, {}).get("long_enough", 0) == 0:
                reasons.append(f"the {split} split has no track of at least {length}")
    report["ready"] = not reasons
    report["too_short_examples"] = [info.path for info in too_short[:SHOWN_EXAMPLES]]
    report["unreadable_files"] = unreadable
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def describe_readiness(report: dict[str, Any]) -> str:
    """The report as a few lines for a terminal: the verdict, the counts, then reasons."""
    verdict = "ready" if report["ready"] else "NOT ready"
    lines = [
        f"{report['root']}: {verdict} for {report['query_length_s']:g} s queries",
        f"  files        {report['files']} ({report['hours']:.2f} h)",
        f"  long enough  {report['long_enough']} (>= {report['min_duration_s']:g} s,"
        f" {report['usable_hours']:.2f} h)",
        f"  too short    {report['too_short']}",
        f"  unreadable   {report['unreadable']}",
    ]
    for split, row in report.get("splits", {}).items():
        lines.append(f"  {split:<12} {row['files']} files, {row['long_enough']} long enough")
    lines += [f"  reason: {reason}" for reason in report["reasons"]]
    lines += [f"  note: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _folder_files(root: Path) -> tuple[list[Path], int]:
    """(audio files the folder source lists: no hidden part in the path; how many are hidden)."""
    audio = audio_files(root)
    shown = [
        path
        for path in audio
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return shown, len(audio) - len(shown)


def _duplicate_ids(paths: list[Path], root: Path) -> list[str]:
    """Files that share a track id (``song.ogg`` beside ``song.mp3``): the folder source
    refuses them."""
    by_id: dict[str, list[Path]] = {}
    for path in paths:
        by_id.setdefault(track_id_of(path, root), []).append(path)
    shared = {track_id: files for track_id, files in by_id.items() if len(files) > 1}
    if not shared:
        return []
    track_id, files = next(iter(shared.items()))
    return [
        f"{len(shared)} track ids are shared by several files, e.g. {track_id!r}"
        f" ({' and '.join(str(path) for path in files)}): keep one file per track"
    ]


def _split_counts(
    splits: list[str | None], results: list[AudioInfo | AudioError], min_duration_s: float
) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {}
    for split, result in zip(splits, results):
        row = counts.setdefault(str(split), Counter(files=0, long_enough=0))
        row["files"] += 1
        if isinstance(result, AudioInfo) and result.duration_s >= min_duration_s:
            row["long_enough"] += 1
    return {split: dict(row) for split, row in counts.items()}
