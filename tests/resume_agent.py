"""An agent launcher for the crash-and-resume test: the fake agent, slow while a flag file exists.

    python resume_agent.py FLAG_FILE [fake agent options...]
"""

import os
import sys

flag, rest = sys.argv[1], sys.argv[2:]
args = [sys.executable, "-m", "actors.fake_agent", *rest]
if os.path.exists(flag):
    args.append("--slow")
os.execv(sys.executable, args)
