"""Cells that a spreadsheet shows as text and never runs as a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@``
(or a tab or carriage return before one) as a formula, which makes any exported text a way to
attack whoever opens the file ("CSV injection"). Every text cell of an export goes through
:func:`safe_cell`, which puts a quote before such a cell; :func:`unsafe_cell` takes it off
again on import.
"""

from __future__ import annotations

# A cell starting with the quote itself gets one too, so that an import, which takes one quote
# off, keeps "'=x" intact.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")

# Excel writes (and Python's csv module reads) CSV best as UTF-8 with this byte-order mark:
# without it, Excel guesses the file's encoding from the computer's locale.
BOM = "\ufeff"


def safe_cell(value: str) -> str:
    """A spreadsheet never runs a cell as a formula: such a cell leads with a quote."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


def unsafe_cell(value: str) -> str:
    """Take off the quote ``safe_cell`` put before a formula-like cell."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value
