"""Stage 3, training: sequence models, losses, schedules, per-class monitoring, resumable
checkpoints, grouped cross-validation folds and the recipe study.
"""
