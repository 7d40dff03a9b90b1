"""Rollguard's composition root: the `rollguard` command line, `rollguard up` and process supervision.

The parts (`flags`, `optimizer`, `portal`, `control`, `alerts`, `dashboard`)
live beside this package and never import it; it wires them together. Its
public surface for the test suite and the benchmarks is `rollguard.processes`
(start, wait for and stop child processes).
"""
