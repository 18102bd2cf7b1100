"""The top floor: layered parameter validation, the notebook runner, notebook start-up, HTML
reports, run records and the ``nexara`` command line.
"""
