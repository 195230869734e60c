"""A recording scanned in sliding windows: each window recognised, agreeing windows merged
into segments (acr.monitor.segments), their edges refined with short clips.

Events. A segment is reported twice: ``start`` when it is confirmed (its second agreeing
window, ~5 s after it starts with the defaults: live output for a stream), and ``end`` when it
closes, with every column of its row (acr.monitor.segments.COLUMNS). A ``gap`` is a stretch
that could not be read (the stream's clock jumps; windows never span it, and segments open
before it close there) or that is silent for ``min_gap_s`` or more (scanned as usual).

Windows. 10-s windows every 3 s (ScanSettings): a 10-s fingerprint search under the 21
hypotheses costs ~40 ms of one core on a 200-track index, so one window per 3 s of audio keeps
monitoring above 100x real time on 2 cores (windows are searched two at a time, in threads);
the hop sets how soon a segment is confirmed (one clear window, or two), while its edges come
from clips.
Agreement: a window's match counts when its score clears ``min_weak_score``, ``chance_ratio`` times
the window's chance level and ``min_relative_score`` of its best; matches of consecutive
windows agree when they name the same track on one alignment (acr.monitor.segments).

Edges: acr.monitor.edges, when a segment is confirmed (its start) and when it closes (its
end), from the audio the scan keeps in a ring of a few windows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from acr.audio import AudioError, resample, rms
from acr.monitor.edges import Edges
from acr.monitor.segments import Chain, Joiner, Segment, Tracker, WindowMatch, join, segment_of
from acr.monitor.stream import Gap, Recording, Ring
from acr.retrieval.recognizer import MIN_QUERY_S, SILENT_QUERY_RMS, Recognizer

# Turntable speeds a DJ set reaches (pitch faders go to +-8 %, Technics SL-1200), on a 2 %
# grid: a speed between two hypotheses is off by at most 1 %, which still leaves most of a
# query's landmarks on their reference bins (the index's default 3 % grid stops at +-6 %).
MONITOR_SPEED_FACTORS = (0.92, 0.94, 0.96, 0.98, 1.02, 1.04, 1.06, 1.08)
SILENCE_BLOCK_S = 0.5  # silence is measured over this long
EDGE_QUERY_SHIFTS = 2  # a 2-s edge clip needs the votes of both frame grids (the index's default)


@dataclass(frozen=True)
class ScanSettings:
    """How a recording is scanned.

    Args:
        window_s: seconds per window. 10 s gathers ~1000 fingerprint votes for a clean
            catalog track and ~30 by chance, so one window is a clear answer even through
            noise; longer windows cost search time and blur short segments.
        hop_s: seconds between window starts: the scan's cost, and how soon a segment is
            confirmed. Measured on soundtrack mixes (2 cores, 196-track index): 2.5 s ran at
            91-104x real time, 3 s at 105-123x with the same recall; edges come from clips,
            not from the hop.
        top_k: ranked tracks per window: a window across a change of track holds two, and
            the last of them measures the window's chance level (see ``chance_ratio``).
        min_score: the score (fingerprint votes) of the windows that confirm a segment.
        min_weak_score: a window's match with a lower score is ignored; from it up to
            ``min_score``, it extends a segment, or confirms one with ``weak_windows`` in all.
            A track through live-mix damage or reverb gets 30-50 votes a window against ~10
            for the others, at one alignment window after window.
        chance_ratio: and one below this multiple of the window's chance level, the score of
            its ``top_k``-th track (no more than two catalog tracks play in one window).
            Noise, or a generated song that shares a drum pattern with catalog songs, lifts
            many tracks to 40-90 votes at once; a track that plays stands 3-60 times above
            the rest, even 7 % off speed.
        min_relative_score: and one below this share of the window's best score: a track
            playing loud and clear (~1000 votes) lends 50-100 to another that shares a loop
            with it, at a steady offset; a track coming in is found above this share once a
            second or two of it is in the window.
        min_windows: agreeing windows at ``min_score`` that confirm a segment (the guard
            against false alarms, whatever the index's calibration).
        weak_windows: agreeing windows of any kept score that confirm a segment (0: never).
        confirm_score: one window this strong confirms a segment by itself (0: never): a
            track heard clearly gets ~100 votes per second of it in a window, chance ~10-40
            and a loop another track shares 50-100. On soundtrack mixes, every clean excerpt
            was reported within 3 s of its start (5.2 s median with 300), with no false alarm.
        join_gap_s: a segment of the track that just played, starting within this many
            seconds of its end (or before it), continues it: one play, one row (a loop or
            chorus found at another alignment, a long talk-over). Its end is then reported
            that much later.
        max_missed: windows in a row that may miss a segment before it closes: a presenter
            talking over the music at 0 dB, or a noise burst, hides a track for up to ~10 s
            (measured on soundtrack mixes: with 1, a talk-over cut one excerpt in two halves
            too short to match it).
        offset_tolerance_s: how far, in reference seconds, a window's offset may be from the
            segment's alignment.
        edge_clip_s: length of the clips that place a segment's edges (0: no refinement; the
            edges are then those of the windows).
        edge_min_score: score a clip's match needs to count at an edge.
        min_gap_s: silence at least this long is reported as a gap.
        speed_factors: fingerprint speed hypotheses while monitoring (a search-time setting;
            empty: the index's own).
        sure_votes: a window whose best track as it sounds (no speed or pitch hypothesis) has
            this many fingerprint votes is not searched under the other 20 hypotheses (0:
            every window is). Faster, but a track coming in at another speed is then not
            ranked while the one playing is sure: on soundtrack mixes 150 cut recall from
            0.951 to 0.943 for 10 % more speed.
        query_shifts: frame grids each window is searched on (FingerprintSettings). 1 costs
            half, but a damaged track loses half its votes: on soundtrack mixes recall fell
            from 0.951 to 0.934.
        threads: windows searched side by side (the fingerprint search releases the GIL),
            ahead of the one being merged; 1 searches each as it comes.
    """

    window_s: float = 10.0
    hop_s: float = 3.0
    top_k: int = 5
    min_score: float = 50.0
    min_weak_score: float = 25.0
    chance_ratio: float = 3.0
    min_relative_score: float = 0.1
    min_windows: int = 2
    weak_windows: int = 4
    confirm_score: float = 150.0
    max_missed: int = 4
    join_gap_s: float = 8.0
    offset_tolerance_s: float = 1.0
    edge_clip_s: float = 2.0
    edge_min_score: float = 10.0
    min_gap_s: float = 3.0
    speed_factors: tuple[float, ...] = MONITOR_SPEED_FACTORS
    sure_votes: int = 0
    query_shifts: int = 2
    threads: int = 2

    def __post_init__(self) -> None:
        if self.window_s < MIN_QUERY_S:
            raise ValueError(f"window_s must be >= {MIN_QUERY_S}, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"hop_s must be in (0, window_s], got {self.hop_s}")
        if not 0 <= self.min_weak_score <= self.min_score:
            raise ValueError("min_weak_score must be in [0, min_score]")
        if self.weak_windows < 0 or self.join_gap_s < 0:
            raise ValueError("weak_windows and join_gap_s must be >= 0")
        if min(self.min_windows, self.top_k, self.threads) < 1 or self.max_missed < 0:
            raise ValueError("min_windows, top_k and threads must be >= 1, max_missed >= 0")
        if self.edge_clip_s and not MIN_QUERY_S <= self.edge_clip_s <= self.window_s:
            raise ValueError(f"edge_clip_s must be 0 or in [{MIN_QUERY_S}, window_s]")
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))

    @property
    def history_s(self) -> float:
        """Audio kept: the stretch an edge may lie in when a segment is confirmed or closes."""
        windows = max(self.min_windows, self.weak_windows)
        return self.window_s + (windows + self.max_missed + 2) * self.hop_s


@dataclass(frozen=True)
class Event:
    """What the scan reports: ``start`` or ``end`` of a segment, or a ``gap``."""

    kind: str
    segment: Segment | None = None
    start_s: float = 0.0
    end_s: float = 0.0
    reason: str = ""


def monitor_recognizer(recognizer: Recognizer, settings: ScanSettings) -> Recognizer:
    """The recognizer with its fingerprint engine searching ``settings.speed_factors``, and
    taking the best track of all hypotheses as it is (``changed_vote_ratio`` 1): the monitor
    weighs every ranked track of a window, and the index's guard for its first track costs
    a second pass over the vote table (a quarter of a window's search)."""
    engine = recognizer.engines.get("fingerprint")
    if engine is not None and settings.speed_factors:
        recognizer.engines["fingerprint"] = engine.with_search_settings(
            speed_factors=settings.speed_factors,
            changed_vote_ratio=1.0,
            sure_votes=settings.sure_votes,
            query_shifts=settings.query_shifts,
        )
    return recognizer


class Scanner:
    """Scans recordings against one recognizer (``exclude``: track ids never reported, as a
    catalog track's own id when it is scanned for duplicates)."""

    def __init__(
        self,
        recognizer: Recognizer,
        settings: ScanSettings | None = None,
        exclude: Callable[[str], bool] | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.settings = settings or ScanSettings()
        self.exclude = exclude
        self.sample_rate = max(engine.sample_rate for engine in recognizer.engines.values())
        fingerprint = recognizer.engines.get("fingerprint")
        self._edge_engine = (
            None
            if fingerprint is None
            else fingerprint.with_search_settings(
                speed_factors=(),
                max_pitch_shift_semitones=0.0,
                changed_vote_ratio=1.0,
                sure_votes=0,
                query_shifts=EDGE_QUERY_SHIFTS,
            )
        )

    def scan(
        self, recording: Recording, progress: Callable[[float], Any] | None = None
    ) -> Iterator[Event]:
        """The events of one recording, as they happen. A recording shorter than one window is
        an AudioError (too short), as a query shorter than MIN_QUERY_S is."""
        return _Scan(self, recording, progress).run()

    def matches(self, audio: np.ndarray) -> list[WindowMatch]:
        """The tracks a window finds, best first, with the recognizer's probability on the
        first; empty for a silent or unusable window."""
        recognition = self.recognizer.recognize(audio, self.sample_rate, self.settings.top_k)
        if recognition.status == "error":
            return []
        probability = recognition.probability
        return [
            WindowMatch(
                m.track_id,
                float(m.score),
                float(m.offset_s),
                float(m.speed_factor),
                float(m.pitch_semitones),
                probability if rank == 0 else None,
            )
            for rank, m in enumerate(recognition.matches)
        ]

    def clip_matches(self, audio: np.ndarray, as_recorded: bool) -> list[WindowMatch]:
        """The tracks an edge clip finds. A clip played back at its segment's speed
        (``as_recorded``: no pitch shift either) needs no hypothesis but "as it sounds": on
        a fingerprint index it is searched under that one alone, a third of the time."""
        if not as_recorded or self._edge_engine is None:
            return self.matches(audio)
        engine = self._edge_engine
        if rms(audio) < SILENT_QUERY_RMS:
            return []
        found = engine.search(resample(audio, self.sample_rate, engine.sample_rate), 5)
        return [WindowMatch(m.track_id, float(m.score), float(m.offset_s)) for m in found]


class _Scan:
    """The state of one recording's scan (see Scanner.scan)."""

    def __init__(
        self, scanner: Scanner, recording: Recording, progress: Callable[[float], Any] | None
    ) -> None:
        self.scanner = scanner
        self.settings = settings = scanner.settings
        self.recording = recording
        self.progress = progress
        self.rate = rate = scanner.sample_rate
        self.window = round(settings.window_s * rate)
        self.hop = round(settings.hop_s * rate)
        # Windows searched ahead of the one being merged: the ring keeps their audio too.
        self.lookahead = 2 * settings.threads if settings.threads > 1 else 0
        self.ring = Ring(round((settings.history_s + self.lookahead * settings.hop_s) * rate))
        self.pool = ThreadPoolExecutor(settings.threads) if settings.threads > 1 else None
        self.edges = Edges(self.ring, rate, settings, scanner.clip_matches)
        self.pending: deque[tuple[int, Future]] = deque()
        self.tracker = Tracker(
            settings.min_windows,
            settings.max_missed,
            settings.offset_tolerance_s,
            settings.min_score,
            settings.weak_windows,
            settings.confirm_score,
        )
        # A continuation is confirmed at most this long after the end of what it continues.
        wait_s = (
            settings.join_gap_s
            + settings.window_s
            + (max(settings.min_windows, settings.weak_windows) * settings.hop_s)
        )
        self.joiner = Joiner(settings.join_gap_s, wait_s)
        self.next_window = 0  # start sample of the next window
        self.stretch_start_s = 0.0  # where the readable stretch being scanned began
        self.last_window: int | None = None  # start of the last window searched
        self.readable = 0  # samples decoded
        self.silence_block = round(SILENCE_BLOCK_S * rate)
        self.silent_from: int | None = None
        self.unreadable: tuple[int, str] | None = None  # where a run of gaps began, and why
        self.silence_pending = np.zeros(0, dtype=np.float32)

    def run(self) -> Iterator[Event]:
        try:
            yield from self._run()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)

    def _run(self) -> Iterator[Event]:
        for item in self.recording.blocks:
            if isinstance(item, Gap):
                yield from self._gap(item)
                continue
            if len(item) == 0:
                continue
            yield from self._gap_ends()
            self.ring.append(item)
            self.readable += len(item)
            yield from self._silence(item)
            while self.ring.end - self.next_window >= self.window:
                self._submit(self.next_window)
                self.next_window += self.hop
            yield from self._harvest()
            if self.progress is not None:
                self.progress(len(item) / self.rate)
        # The stretch after the last full hop: one more window ending with the recording.
        end = self.ring.end
        if self.ring.held >= self.window and self.last_window is not None:
            if end - self.window > self.last_window:
                self._submit(end - self.window)
        yield from self._harvest(everything=True)
        yield from self._silence_ends(end)
        self._close(self.tracker.close_all())
        yield from self._release()
        yield from self._gap_ends()
        if self.last_window is None:
            longest = max(self.ring.held, self.readable) / self.rate
            raise AudioError(
                self.recording.name,
                f"too short ({longest:.2f} s < {self.settings.window_s:g} s, one monitoring"
                " window; acr recognize answers clips)",
            )

    def _submit(self, start: int) -> None:
        """Search the window at ``start`` (in a thread when there are several)."""
        audio = self.ring.read(start, start + self.window)
        if self.pool is None:
            result: Future = Future()
            result.set_result(self.scanner.matches(audio))
        else:
            result = self.pool.submit(self.scanner.matches, audio)
        self.pending.append((start, result))
        self.last_window = start

    def _harvest(self, everything: bool = False) -> Iterator[Event]:
        """Windows whose search is done, in order; a full queue (or ``everything``) waits."""
        while self.pending and (
            everything or self.pending[0][1].done() or len(self.pending) > self.lookahead
        ):
            start, result = self.pending.popleft()
            yield from self._window(start, result.result())

    def _window(self, start: int, matches: list[WindowMatch]) -> Iterator[Event]:
        settings = self.settings
        # The chance level before a scanned catalog track's own id is left out (dedup): it is
        # a true match, and chance is what lies below the true ones.
        ranked = sorted(m.score for m in matches)
        chance = ranked[-settings.top_k] if len(ranked) >= settings.top_k else 0.0
        if self.scanner.exclude is not None:
            matches = [m for m in matches if not self.scanner.exclude(m.track_id)]
        floor = max(
            settings.min_weak_score,
            settings.chance_ratio * chance,
            settings.min_relative_score * (ranked[-1] if ranked else 0.0),
        )
        kept = [m for m in matches if m.score >= floor]
        confirmed, closed = self.tracker.observe(start / self.rate, kept)
        self._close(closed)
        for chain in confirmed:
            chain.edge_start_s = self.edges.start(chain, self.stretch_start_s)
            chain.joined = self.joiner.continued(chain.track_id, chain.edge_start_s)
            if chain.joined is None:  # a continuation's start was reported with its first
                yield Event("start", self._segment(chain, end_s=None))
        yield from self._release(start / self.rate)

    def _close(self, chains: list[Chain]) -> None:
        """Closed chains' segments are held (acr.monitor.segments.Joiner), then released."""
        for chain in sorted(chains, key=lambda c: c.number):
            segment = self._segment(chain, self.edges.end(chain))
            self.joiner.hold(segment if chain.joined is None else join(chain.joined, segment))

    def _release(self, now_s: float | None = None) -> Iterator[Event]:
        """``end`` events of the held segments nothing can continue any more (None: all)."""
        for segment in self.joiner.due(now_s):
            yield Event("end", segment)

    def _segment(self, chain: Chain, end_s: float | None) -> Segment:
        start_s = chain.edge_start_s
        if end_s is None or end_s <= start_s:  # at confirmation (the end so far), or edges
            end_s = chain.last_start_s + self.settings.window_s  # that clips could not place
        return segment_of(chain, self.recording.name, start_s, end_s)

    def _gap(self, gap: Gap) -> Iterator[Event]:
        """An unreadable stretch: segments close before it, windows start again after it;
        reported when the audio comes back (gaps in a row are one)."""
        if self.unreadable is None:
            yield from self._harvest(everything=True)
            yield from self._silence_ends(self.ring.end)
            self._close(self.tracker.close_all())
            yield from self._release()
            self.unreadable = (self.ring.end, gap.reason)
        stop = self.ring.end + round(gap.seconds * self.rate)
        self.ring.reset(stop)
        self.silence_pending = self.silence_pending[:0]
        self.next_window = stop
        self.stretch_start_s = stop / self.rate
        if self.progress is not None:
            self.progress(gap.seconds)

    def _gap_ends(self) -> Iterator[Event]:
        if self.unreadable is not None:
            (start, reason), self.unreadable = self.unreadable, None
            yield Event("gap", start_s=start / self.rate, end_s=self.ring.end / self.rate,
                        reason=reason)  # fmt: skip

    def _silence(self, audio: np.ndarray) -> Iterator[Event]:
        """Silent stretches (below the recognizer's -60 dBFS), measured per SILENCE_BLOCK_S."""
        pending = np.concatenate([self.silence_pending, audio])
        first = self.ring.end - len(pending)
        usable = len(pending) - len(pending) % self.silence_block
        for offset in range(0, usable, self.silence_block):
            block = pending[offset : offset + self.silence_block]
            if rms(block) < SILENT_QUERY_RMS:
                if self.silent_from is None:
                    self.silent_from = first + offset
            else:
                yield from self._silence_ends(first + offset)
        self.silence_pending = pending[usable:]

    def _silence_ends(self, at: int) -> Iterator[Event]:
        if self.silent_from is not None:
            start, self.silent_from = self.silent_from, None
            if (at - start) / self.rate >= self.settings.min_gap_s:
                yield Event("gap", start_s=start / self.rate, end_s=at / self.rate, reason="silent")
