"""Files that hold secrets, readable by their owner only.

`rollguard up` writes its tokens and the dashboard password with
`write_private`: the folder is made mode 0700 and the file 0600 before a byte
of the secret is written, whatever the umask or an older file's mode was.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (replacing it) with mode 0600 in a folder with mode 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    path.parent.chmod(FOLDER_MODE)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
