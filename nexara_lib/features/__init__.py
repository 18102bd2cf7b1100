"""Stage 2, frame features: the backbone registry, the feature stream (what a cache key means),
exact frame sampling jobs, and the local and Ray executors that fill the feature cache.
"""
