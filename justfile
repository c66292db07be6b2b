# corral tasks. `just --list` shows them.

# install the pinned ACP adapters the real-adapter tests run (tests/agents/package-lock.json)
agents:
    npm ci --prefix tests/agents

# run the test suite (the same command CI runs)
test *ARGS:
    python -m pytest {{ARGS}}

# lint: ruff, the import contracts (.importlinter), mypy (strict), module/function sizes
lint:
    ruff check .
    lint-imports
    mypy
    python .ci/sizes.py

# the main job: the demo on the embedded SQLite default
demo *ARGS:
    python -m runtime demo {{ARGS}}

# every benchmark, one table, writes benchmarks/results.json
bench:
    python benchmarks/run_all.py

# CPU A/B of this checkout against OTHER (e.g. `git worktree add /tmp/base HEAD~1`) on the store's workloads
bench-ab OTHER *ARGS:
    python benchmarks/ab.py {{OTHER}} {{ARGS}}

# corral next to crewAI, LangGraph and DBOS, each in its own pinned venv under .bench-peers/
bench-peers:
    python benchmarks/peers.py
