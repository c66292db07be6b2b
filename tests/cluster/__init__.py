"""Jobs on a Ray cluster (``runtime.cluster``): a package, so that one Ray head serves all its
modules (the package-scoped ``ray_head`` fixture in conftest.py)."""
