"""Search: the HNSW segment index, track ranking, retrieval metrics and the validation callback."""

from acr.retrieval.callbacks import RetrievalEvaluation
from acr.retrieval.index import SegmentIndex, TrackMatch
from acr.retrieval.metrics import RetrievalAccuracy

__all__ = ["RetrievalAccuracy", "RetrievalEvaluation", "SegmentIndex", "TrackMatch"]
