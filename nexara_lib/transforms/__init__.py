"""Transforms, one floor above the ground: the one registry of named transforms of frames, of
frame sampling and of feature sequences, serving training augmentation and test-time views alike,
the stream views (regions of every frame, each a feature stream of its own: ``frame_views``, and the
difference images of ``motion_images``), and the seeded per-clip augmentation copies built from them.

Importing the package registers every transform (``frame_ops``, ``frame_views``, ``motion_images``, then
``feature_ops``), so a lookup through ``nexara_lib.transforms.registry`` always sees the whole registry.
"""

from nexara_lib.transforms import feature_ops, frame_ops, frame_views, motion_images  # noqa: F401  (registers them)
