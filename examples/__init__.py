"""Example flows for corral: YAML files run with ``corral run examples/<name>.yaml`` from the
repository root, python steps in :mod:`examples.steps`, and an embedding example in
:mod:`examples.embed` (``python -m examples.embed``)."""
