"""The benchmark suite (``bench/run``); not part of the test suite."""
