"""Search: engines (fingerprint, embedding, melody), the HNSW segment index, fusion, the
Recognizer, index building, evaluation and the validation callback.

Kept free of imports so that worker processes that only decode and extract features do not
pay for importing Lightning.
"""
