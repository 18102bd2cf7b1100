"""NexaraVision: a thin, tested library behind the violence-detection experiment notebooks."""
__version__ = "0.1.0"
