# corral tasks. `just --list` shows them.

# run the test suite (the same command CI runs)
test *ARGS:
    python -m pytest {{ARGS}}

# lint with ruff and check the import contracts (.importlinter)
lint:
    ruff check .
    lint-imports

# the main job: the demo on the embedded SQLite default
demo *ARGS:
    python -m runtime demo {{ARGS}}

# every benchmark, one table, writes benchmarks/results.json
bench:
    python benchmarks/run_all.py

# corral next to crewAI, in its own venv under .bench-peers/
bench-peers:
    python benchmarks/peers.py
