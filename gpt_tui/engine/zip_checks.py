"""The one place a PyTorch zip file is checked before ``torch.load`` unpacks it.

``torch.save`` stores every member uncompressed, so a real checkpoint's
members add up to about the file's own size. A zip whose members would inflate
to far more (two gigabytes of deflated zeros in a 2 MB file) is refused from
its directory alone, before anything is decompressed, so a small crafted
file cannot cost gigabytes of memory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from gpt_tui.errors import UserError

MAX_MEMBERS = 100_000
SLACK_BYTES = 16 << 20  # room for a re-zipped file's pickle and small tensors compressed well


def check_torch_zip(path: Path) -> None:
    """Refuse a zip whose declared contents are far larger than the file, or that is no zip at all."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UserError(f"{path} is corrupt or not a PyTorch file ({exc}); download or copy it again.") from None
    if len(members) > MAX_MEMBERS:
        raise UserError(f"{path} holds {len(members)} entries, more than any checkpoint of weights; it is not one.")
    declared = sum(member.file_size for member in members)
    limit = 2 * size + SLACK_BYTES
    if declared > limit:
        raise UserError(f"{path} would unpack to {declared:,} bytes from a file of {size:,}; weights do not compress "
                        f"like that, so it is damaged or crafted (refused before unpacking). Use another copy.")
