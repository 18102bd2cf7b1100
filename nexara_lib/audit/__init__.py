"""Stage 1, the data audit: discover clips in the known layouts, probe them, group duplicates and
source recordings, make grouped splits, and write the manifest every later stage reads.
"""
