"""Engines: one file each, one call shape `check(network, spec, deadline, options) -> Outcome`.

Engines never read files and never print. `deadline` is an absolute time.monotonic() value.
"""
