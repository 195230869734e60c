"""Data: track and query tables, their checks and inspection, splits, exports, the decode cache,
torch datasets, simulated query sets and segment strategies.

Kept free of imports: each module is imported where it is used.
"""
