"""Stage 7, from experiment to detector: export the carried-forward model for the edge (TFLite/LiteRT)
with parity checks, and run it on videos, folders, cameras and multi-camera grids with confirmed alerts."""
