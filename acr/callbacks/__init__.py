"""Lightning callbacks: retrieval evaluation at validation, the run's status heartbeat."""

from acr.callbacks.retrieval import RetrievalEvaluation
from acr.callbacks.status import RunStatus

__all__ = ["RetrievalEvaluation", "RunStatus"]
