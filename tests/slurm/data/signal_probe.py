"""Rule command of Snakefile.signal: wait for SIGURG, then write "<job id> signaled|not signaled" to argv[1].

Gives up after 45 s (inside the 1-minute limit), or 5 s after the other probe's file argv[2] appeared (both jobs
start together and slurmctld signals them in the same pass).
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
while not got and time.monotonic() - t0 < 45:
    if other != out and other_seen is None and other.exists():
        other_seen = time.monotonic()
    if other_seen is not None and time.monotonic() - other_seen > 5:
        break
    time.sleep(0.1)
state = f"signaled after {got[0] - t0:.0f} s" if got else "not signaled"
out.write_text(f"{os.environ['SLURM_JOB_ID']} {state}\n")
