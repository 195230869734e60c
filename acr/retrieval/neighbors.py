"""Nearest-neighbour search over one part's window vectors (unit rows, inner product): hnswlib
(the default) or FAISS, exact (Flat) or compressed (IVF-PQ).

A part's labels are 0..size-1 in the order vectors were added; acr.retrieval.windows offsets
them per part and merges parts. Removed tracks' labels are excluded at search time (hnswlib
marks them deleted; FAISS filters them with an IDSelector) until the parts are merged.

IVF-PQ (Jegou et al. 2011; FAISS's IndexIVFPQ, as neural-audio-fp searches its 100k-song
database): ``nlist`` coarse cells, each vector stored as ``pq_m`` codes of ``nbits`` bits
(``pq_m`` bytes at 8 bits) plus its 8-byte id, and ``nprobe`` cells visited per query. It is
trained on up to ``train_windows`` vectors of the first part written; every later part of the
index reuses that training (``template``), so parts merge by moving codes, without loss.

With ``nbits`` 4 the codes are scanned by FAISS's fast-scan kernels (IndexIVFPQFastScan,
André et al. 2017: a sub-quantiser's 16 distances fit a SIMD register, so the lookups run in
registers instead of memory): 64 four-bit codes take the 32 bytes of 32 eight-bit ones and were
8x faster to scan at the same recall@1 (1 million clustered 128-d vectors, 9 query windows,
16 of 114 cells: 2.2 against 17.6 ms on one core).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import hnswlib
import numpy as np

from acr.retrieval.engine import check_index, reading

if TYPE_CHECKING:
    import faiss

HNSW_FILE = "hnsw.bin"
FAISS_FILE = "faiss.index"
TRAIN_SEED = 0
FAST_SCAN_BITS = 4  # IVF-PQ codes this wide are scanned with FAISS's fast-scan kernels
Backend = Literal["hnsw", "flat", "ivfpq"]


@dataclass(frozen=True)
class SearchSettings:
    """How a window index finds neighbours.

    Args:
        backend: hnsw (hnswlib graph, the default), flat (FAISS exact search) or ivfpq (FAISS
            inverted lists of product-quantised codes: ``pq_m`` bytes per window).
        m: HNSW graph degree; 16-32 is the usual recall/memory balance.
        ef_construction: HNSW build-time beam width (higher: better graph, slower build).
        ef_search: HNSW query-time beam width (higher: better recall, slower search).
        nlist: IVF-PQ coarse cells (lowered to a 39th of the training vectors when fewer).
        pq_m: IVF-PQ sub-quantisers per vector; must divide the embedding size.
        nbits: IVF-PQ bits per sub-quantiser code; 4 scans them with FAISS's fast-scan
            kernels (pq_m 64 at 4 bits: the bytes of 32 at 8, scanned ~8x faster).
        nprobe: IVF-PQ cells visited per query (higher: better recall, slower search).
        train_windows: IVF-PQ training sample, in windows.
    """

    backend: Backend = "hnsw"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int = 1024
    pq_m: int = 32
    nbits: int = 8
    nprobe: int = 32
    train_windows: int = 65536

    def __post_init__(self) -> None:
        if self.backend not in ("hnsw", "flat", "ivfpq"):
            raise ValueError(f"backend must be hnsw, flat or ivfpq, not {self.backend!r}")
        for name in ("m", "ef_construction", "ef_search", "nlist", "pq_m", "nbits", "nprobe"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")


class HnswPart:
    """One part's vectors in an hnswlib graph."""

    def __init__(self, dim: int, settings: SearchSettings, index: Any = None, size: int = 0):
        self.dim, self.settings = dim, settings
        self.index = index or hnswlib.Index(space="ip", dim=dim)
        self.size = size
        self.removed = 0
        self._capacity = size

    def add(self, vectors: np.ndarray) -> None:
        needed = self.size + len(vectors)
        if not self._capacity:
            self._capacity = max(needed, 1024)
            self.index.init_index(
                self._capacity, ef_construction=self.settings.ef_construction, M=self.settings.m
            )
        elif needed > self._capacity:
            self._capacity = max(needed, 2 * self._capacity)
            self.index.resize_index(self._capacity)
        # One thread: hnswlib's parallel insertion links windows in whatever order the threads
        # reach them, so two builds of the same vectors differed byte for byte. The cost (30,000
        # windows: 12 s instead of 6 s alone) is mostly hidden, as decoding workers share the
        # cores during a build.
        self.index.add_items(vectors, np.arange(self.size, needed), num_threads=1)
        self.size = needed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.set_ef(max(self.settings.ef_search, k))
        labels, distances = self.index.knn_query(queries, k=k)
        return labels.astype(np.int64), 1.0 - distances

    def delete(self, labels: np.ndarray) -> None:
        for label in labels:
            self.index.mark_deleted(int(label))
        self.removed += len(labels)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        return self.index.get_items(labels, return_type="numpy").astype(np.float32)

    def save(self, directory: Path) -> None:
        if not self._capacity:  # an empty graph is still a file
            self.index.init_index(
                1, ef_construction=self.settings.ef_construction, M=self.settings.m
            )
            self._capacity = 1
        self.index.save_index(str(directory / HNSW_FILE))

    @classmethod
    def load(cls, directory: Path, dim: int, settings: SearchSettings, count: int) -> HnswPart:
        path = directory / HNSW_FILE
        check_index(path.is_file(), path, "missing")  # hnswlib: "Cannot open file"
        index = hnswlib.Index(space="ip", dim=dim)
        with reading(path):
            index.load_index(str(path), max_elements=max(count, 1))
        check_index(
            index.get_current_count() == count and index.dim == dim,
            path,
            f"{index.get_current_count()} vectors of {index.dim} dimensions; the"
            f" window table has {count} of {dim}",
        )
        return cls(dim, settings, index, count)


class FaissPart:
    """One part's vectors in a FAISS index (Flat or IVF-PQ), labelled by their ids."""

    def __init__(
        self, dim: int, settings: SearchSettings, index: Any = None, template: Any = None
    ) -> None:
        import faiss  # imported with the backend: an hnsw index never loads it

        self.dim, self.settings = dim, settings
        self._template = template  # an empty, trained IVF-PQ index shared by every part
        self._file: Path | None = None  # a loaded part's index file (its lists are mapped)
        if index is None and settings.backend == "flat":
            index = faiss.IndexFlatIP(dim)
        elif index is None and template is not None:
            index = faiss.clone_index(template)
        self.index = index  # None: IVF-PQ waiting for its training vectors
        self.size = 0 if index is None else int(index.ntotal)
        self.removed_labels = np.zeros(0, dtype=np.int64)
        self._waiting: list[np.ndarray] = []

    @property
    def removed(self) -> int:
        return len(self.removed_labels)

    @property
    def template(self) -> Any:
        """The empty, trained IVF-PQ index (None before training, and for Flat). A loaded
        part reads it from its file when first asked, which only a writer does (to add a
        part or merge): emptying a copy costs a pass over the codes that a reader never pays."""
        if self._template is None and self._file is not None and self.settings.backend == "ivfpq":
            template = _read_faiss(self._file, self.settings.backend, mapped=False)
            template.reset()  # mapped lists are read-only
            self._template = template
        return self._template

    @template.setter
    def template(self, template: Any) -> None:
        self._template = template

    def add(self, vectors: np.ndarray) -> None:
        labels = np.arange(self.size, self.size + len(vectors), dtype=np.int64)
        self.size += len(vectors)
        if self.index is None:
            self._waiting.append(vectors)
        elif self.settings.backend == "flat":
            self.index.add(vectors)
        else:
            self.index.add_with_ids(vectors, labels)

    def _ready(self) -> Any:
        """The index, trained on this part's vectors first if it is an untrained IVF-PQ."""
        if self.index is None:
            vectors = np.concatenate(self._waiting or [np.zeros((0, self.dim), np.float32)])
            self._waiting = []
            self.template = train_ivfpq(vectors, self.settings)
            self.index = _clone(self.template)
            self.index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
        return self.index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        index = self._ready()
        selector = None
        if self.removed:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.removed_labels))
        if self.settings.backend == "flat":
            parameters = faiss.SearchParameters(sel=selector)
        else:
            parameters = faiss.SearchParametersIVF(sel=selector, nprobe=self.settings.nprobe)
        similarities, labels = index.search(np.ascontiguousarray(queries), k, params=parameters)
        missing = labels < 0  # IVF-PQ: fewer than k vectors in the cells visited
        return np.where(missing, 0, labels), np.where(missing, -np.inf, similarities)

    def delete(self, labels: np.ndarray) -> None:
        self.removed_labels = np.union1d(self.removed_labels, labels).astype(np.int64)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors (IVF-PQ: their reconstruction from the codes)."""
        import faiss

        index = self._ready()
        if self.settings.backend != "flat" and index.direct_map.type != faiss.DirectMap.Array:
            # Built once per part (a merge asks track by track; each build walks every list).
            # make_direct_map fails on a fast-scan index in faiss 1.15; this does not.
            index.set_direct_map_type(faiss.DirectMap.Array)
        return index.reconstruct_batch(np.asarray(labels, np.int64)).astype(np.float32)

    def save(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self._ready(), str(directory / FAISS_FILE))

    @classmethod
    def load(cls, directory: Path, dim: int, settings: SearchSettings, count: int) -> FaissPart:
        path = directory / FAISS_FILE
        check_index(path.is_file(), path, "missing")
        with reading(path):
            index = _read_faiss(path, settings.backend)
        check_index(
            index.ntotal == count and index.d == dim,
            path,
            f"{index.ntotal} vectors of {index.d} dimensions; the window table has {count}"
            f" of {dim}",
        )
        part = cls(dim, settings, index)
        part._file = path
        return part

    def owned_copy(self) -> Any:
        """A copy of the index to change (mapped lists can be neither changed nor cloned)."""
        if self._file is not None:
            return _read_faiss(self._file, self.settings.backend, mapped=False)
        return _clone(self._ready())


def train_ivfpq(vectors: np.ndarray, settings: SearchSettings) -> faiss.Index:
    """An empty IVF-PQ index trained on a seeded sample of ``vectors``."""
    import faiss

    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    if len(vectors) == 0 or dim % settings.pq_m:
        raise ValueError(
            f"IVF-PQ needs training windows and pq_m ({settings.pq_m}) dividing the embedding"
            f" size ({dim})"
        )
    rng = np.random.default_rng(TRAIN_SEED)
    if len(vectors) > settings.train_windows:
        vectors = vectors[np.sort(rng.choice(len(vectors), settings.train_windows, False))]
    # FAISS wants about 39 training points per cell; k-means needs a point per code at least
    # (a first segment of a few short tracks: fewer cells and bits, not an error).
    nlist = max(1, min(settings.nlist, len(vectors) // 39))
    nbits = min(settings.nbits, max(1, int(np.log2(len(vectors)))))
    kind = faiss.IndexIVFPQFastScan if nbits == FAST_SCAN_BITS else faiss.IndexIVFPQ
    index = kind(
        faiss.IndexFlatIP(dim), dim, nlist, settings.pq_m, nbits, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = TRAIN_SEED
    index.pq.cp.seed = TRAIN_SEED
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def merge_ivfpq(parts: list[FaissPart], new_labels: list[np.ndarray]) -> FaissPart | None:
    """The parts' codes moved into one IVF-PQ index under new labels (-1: left out), without
    decoding them; None when the parts were not trained alike (then vectors are re-added)."""
    import faiss

    trained = [part for part in parts if part.index is not None or part._waiting]
    if not trained:
        return None
    templates = [part._ready() and part.template for part in trained]
    first = faiss.serialize_index(templates[0])
    if any(not np.array_equal(faiss.serialize_index(t), first) for t in templates[1:]):
        return None
    merged = FaissPart(parts[0].dim, parts[0].settings, template=templates[0])
    for part, labels in zip(parts, new_labels):
        if part.index is None or part.index.ntotal == 0:
            continue
        copy = part.owned_copy()
        dropped = np.flatnonzero(labels < 0).astype(np.int64)
        if len(dropped):
            copy.remove_ids(faiss.IDSelectorBatch(dropped))
        lists = copy.invlists
        for number in range(copy.nlist):
            size = lists.list_size(number)
            if size:
                ids = faiss.rev_swig_ptr(lists.get_ids(number), size)
                ids[:] = labels[ids]
        merged.index.merge_from(copy, 0)
    merged.size = int(merged.index.ntotal)
    return merged


def _read_faiss(path: Path, backend: Backend, mapped: bool = True) -> Any:
    """A FAISS index file, memory-mapped: IVF lists (IO_FLAG_MMAP) and flat vectors
    (IO_FLAG_MMAP_IFC; the two flags do not combine) stay in the file, so a reader holds the
    pages its queries touch and processes share one copy in the page cache (at 10^5 tracks,
    1.7 GB of IVF-PQ codes were read whole into every process, and copied once more)."""
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC if backend == "flat" else faiss.IO_FLAG_MMAP
    index = faiss.read_index(str(path), flags if mapped else 0)
    if isinstance(index, faiss.IndexIVFPQFastScan) and index.fine_quantizer is None:
        # read_index leaves the decoder unset (faiss 1.15.1), and decoding a code (to
        # reconstruct a window) then dereferences a null pointer: it is the index's own PQ.
        index.fine_quantizer = index.pq
    return index


def _clone(index: Any) -> Any:
    import faiss

    return faiss.clone_index(index)
