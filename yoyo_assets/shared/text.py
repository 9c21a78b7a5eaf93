"""Characters that text stored or sent by the pipeline may not hold.

LadybugDB crashes the process (a segmentation fault) on a string holding a lone surrogate, and
truncates or refuses some strings with control characters (docs/reliability.md). A lone
surrogate reaches Python strings from non-UTF-8 file names (`surrogateescape`) and from JSON
escapes such as `"\\ud800"`; control characters from documents and model answers.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters (Unicode category Cc) and lone surrogates (category Cs, which a
#: Python `str` holds only unpaired).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def unsafe_character(text: str) -> str | None:
    """A description of the first control character or lone surrogate in `text`, such as
    "control character U+001B at offset 7", or None when there is none."""
    match = _UNSAFE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    kind = "lone surrogate" if 0xD800 <= code <= 0xDFFF else "control character"
    return f"{kind} U+{code:04X} at offset {match.start()}"


def without_unsafe_characters(text: str) -> str:
    """`text` with every control character and lone surrogate replaced by a space."""
    return _UNSAFE.sub(" ", text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` safe to print or log on one line: control characters (newlines, terminal escape
    codes) and lone surrogates (from undecodable file names) as backslash escapes, such as
    `\\x1b` and `\\udcff`; other characters as they are."""
    return _UNSAFE.sub(_escape, text)
