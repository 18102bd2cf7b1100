"""Speed benchmarks (``make bench``): JSON reports, never assertions on time. Not part of the wheel."""
