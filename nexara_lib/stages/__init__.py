"""Glue: one run-aware module per notebook. Each reads the run's parameters and artifacts,
calls the stage packages, and writes artifacts back; the notebooks call only these and display.
"""
