"""Sections of bench/RESULTS.md that belong to one benchmark script each.

A section sits between "<!-- name:begin -->" and "<!-- name:end -->" markers; writing it
again replaces it in place, and side_by_side.py keeps such sections when it rewrites the
file's head.
"""

import os


def write_section(path, begin, end, section):
    """Replaces the marked section in `path` (or appends it); `section` includes the markers."""
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
