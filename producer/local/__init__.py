"""The local stack: srdb on one machine, and the parts of it tests and benchmarks share."""
