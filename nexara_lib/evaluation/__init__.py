"""Stages 4-6, evaluation: metrics with bootstrap CIs and paired tests, diagnostics, TTA and
ensembles. Works on predictions (labels + probabilities), never on models or run folders.
"""
