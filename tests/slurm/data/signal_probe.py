"""Rule command of Snakefile.signal: wait for SIGURG, then write "<job id> signaled|not signaled" to argv[1].

The step probe (argv[1] == argv[2]) waits for the signal up to 100 s (inside the 2-minute limit). The batch probe
stops 5 s after the step probe's file argv[2] appeared (both jobs start together and slurmctld signals them in the
same pass), or after 100 s.
"""

import os
import signal
import sys
import time
from pathlib import Path

out, other = Path(sys.argv[1]), Path(sys.argv[2])
got: list[float] = []
signal.signal(signal.SIGURG, lambda *_: got.append(time.monotonic()))
t0, other_seen = time.monotonic(), None
while not got and time.monotonic() - t0 < 100:
    if other != out and other_seen is None and other.exists():
        other_seen = time.monotonic()
    if other_seen is not None and time.monotonic() - other_seen > 5:
        break
    time.sleep(0.1)
state = f"signaled after {got[0] - t0:.0f} s" if got else f"not signaled in {time.monotonic() - t0:.0f} s"
out.write_text(f"{os.environ['SLURM_JOB_ID']} {state}\n")
