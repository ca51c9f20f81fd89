"""Starting an anomalyd server from a script: a free loopback port, and waiting for /readyz.

Shared by bench/load_bench.py and tests/schemathesis/run.py.
"""

import socket
import time
import urllib.request


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, seconds=60):
    """Returns once `url` answers 200; exits the script after `seconds` without one."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:  # not listening yet, or 503 while it starts
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} not ready after {seconds} s")
