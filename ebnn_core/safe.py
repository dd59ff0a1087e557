"""Names that become paths or C text, and free text that goes into generated files.

    safe_name(value, "device.name")      # the value, or ValueError (or `error`) naming key and value
    c_comment("x */ y")                  # 'x * / y': inert inside /* */, // and # comments
    shown(value)                         # a value as one printable line, for error messages
"""
from __future__ import annotations

import re

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_NAME_RULE = "must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit, no '..')"


def shown(value) -> str:
    """A value for a one-line message: as typed when printable, else its repr (newlines, escapes)."""
    return value if isinstance(value, str) and value.isprintable() else repr(value)


def is_safe_name(value) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None and ".." not in value


def safe_name(value, key: str, error: type[Exception] = ValueError) -> str:
    """`value` if it is safe as one path component and inside C text; else `error('key=value: ...')`."""
    if not is_safe_name(value):
        raise error(f"{key}={shown(value)}: {SAFE_NAME_RULE}")
    return value


def c_comment(text) -> str:
    """Free text made inert in a C block or line comment and a Makefile comment: printable ASCII on one
    line, no backslash (line splicing), and a space between any '/' and '*' so no comment opens or ends."""
    s = "".join(c if " " <= c <= "~" and c != "\\" else "_" for c in str(text))
    return re.sub(r"\*(?=/)|/(?=\*)", lambda m: m.group() + " ", s)
