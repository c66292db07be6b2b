"""A stand-in stdio MCP server for the [[mcp]] directive of sdk_agent.mjs.

``python mcp_server.py PIDFILE VAR``: writes ``{"pid": ..., "sha256": ...}`` to PIDFILE (the hash
of the value of the variable VAR in its environment, so the value itself is never written), says
``ready`` on stdout, then waits for a signal -- it never exits by itself, not even when its stdin
closes: only the death of its process group ends it.
"""

import hashlib
import json
import os
import signal
import sys

path, var = sys.argv[1], sys.argv[2]
value = os.environ.get(var)
digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else None
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"pid": os.getpid(), "sha256": digest}, f)
os.replace(tmp, path)
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    signal.pause()
