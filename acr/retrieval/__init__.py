"""Search: the engines (fingerprint, embedding, melody), the HNSW window index, the index
directory (store) and its build, fusion, the Recognizer and evaluation.

Kept free of imports so that worker processes that only decode and extract features do not
pay for importing Lightning.
"""
