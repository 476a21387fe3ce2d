"""Hypothesis-driven hostile input for the orchestrator's WebSocket and the worker's gRPC API:
strategies, the oracles each case is judged by, and the processes they run against. Used by
`tests/integration/test_fuzz_sample.py` (a small seed-stable sample) and `bench/fuzz.py`."""
