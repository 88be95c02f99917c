"""Reading hnnfit's plain-text tables (dipoles, spikes).

Both formats are whitespace- or comma-separated rows, blank lines ignored,
with ``# key: value`` comment lines carrying metadata.
"""
import re
from pathlib import Path

_META = re.compile(r"#\s*(\w+)\s*:\s*(\S+)\s*$")
_SPLIT = re.compile(r"[,\s]+")


def read_text_table(path):
    """Metadata and data lines of a text table.

    Returns
    -------
    meta : dict of str to str
        ``key: value`` pairs of the file's comment lines.
    lines : list of (int, str, list of str)
        Each non-blank, non-comment line: its 1-based number, its stripped
        text and its tokens.
    """
    meta, lines = {}, []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            match = _META.match(text)
            if match:
                meta[match.group(1)] = match.group(2)
            continue
        lines.append((line_no, text, [tok for tok in _SPLIT.split(text) if tok]))
    return meta, lines
