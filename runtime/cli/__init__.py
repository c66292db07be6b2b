"""The ``corral`` command line: click commands, rendering, YAML flow files, and the demo."""
