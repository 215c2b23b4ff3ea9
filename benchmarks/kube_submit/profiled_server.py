"""`mlp server` under cProfile, for run.py's --profile-server.

    python profiled_server.py STATS_FILE server [mlp server options...]

Profiles the process's CPU time (not wall time: the box is shared) only between SIGUSR1 and SIGUSR2
(run.py sends them around each platform phase) and writes the stats to STATS_FILE when the server
stops. cProfile slows the server (≈ 3.5×), so a profiled run's figures are not the goals'.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time

from mlplatform_server.cli import main

if __name__ == "__main__":
    out = sys.argv.pop(1)
    sys.argv[0] = "mlp"
    profile = cProfile.Profile(time.process_time)
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
    try:
        main()
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)
