"""NexaraVision: a thin, tested library behind the violence-detection experiment notebooks.

Floors, lowest first (a module imports only from its own floor or the ones below):
ground (``config``, ``registry``, ``io``, ``labels``, ``runtime``, ``layout``), ``video``,
``audit``, ``features``, ``evaluation``, ``training``, ``stages`` (notebook glue), ``run``.
"""

__version__ = "0.1.0"
