"""Running a command as a user whom file permissions stop, even when the tests run as root.

Root ignores `chmod` (CAP_DAC_OVERRIDE), so a read-only directory can only be
tested as root by dropping that capability: `setpriv` removes it (and
CAP_DAC_READ_SEARCH) from the bounding set before exec, and the command runs as
root that obeys permission bits. Non-root users need nothing.
"""

import functools
import os
import shutil
import subprocess
import tempfile

DROP = ["--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search"]


@functools.lru_cache(maxsize=1)
def prefix() -> list[str] | None:
    """The argv prefix that makes permission bits apply; None when this machine cannot."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        locked = os.path.join(d, "locked")
        os.mkdir(locked, 0o555)
        probe = subprocess.run(["setpriv", *DROP, "touch", os.path.join(locked, "x")],
                               capture_output=True)
        return ["setpriv", *DROP] if probe.returncode != 0 else None
