"""Video files: probing a file, reading exact frames, and the synthetic dataset generator.

No model code and no run awareness: everything here takes paths and returns frames or facts.
"""
