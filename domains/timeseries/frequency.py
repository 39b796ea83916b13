"""Frequencies spelled one way, whatever the pandas version, and the seasonal periods each implies.

pandas 2.2 renamed the *offset* aliases of month / quarter / year ends (``M`` → ``ME``, ``Q`` → ``QE``,
``Y`` → ``YE``; ``H`` → ``h``, ``T`` → ``min``, ``S`` → ``s``, ``A`` → ``Y``) while ``pd.Period`` kept the
old *period* aliases (``M``, ``Q-DEC``, ``Y-DEC``). pandas 3 goes further: ``to_offset("M")`` and every
old spelling raise, and ``pd.Period(..., freq="ME")`` raises in both. GluonTS reads a frequency both ways
(``pd.Period`` for a series' start, ``to_offset`` for seasonality, lags and calendar features), so no
single string works everywhere under pandas 3. Hence two functions:

- :func:`normalise_freq`: any accepted spelling → the **period alias** (``M``, ``Q-DEC``, ``Y-DEC``,
  ``W-SUN``, ``D``, ``h``, ``15min``), the one spelling a :class:`SeriesCollection` and its entries'
  ``start`` carry; it is parsed by hand, so the same input gives the same result under pandas 2 and 3;
- :func:`offset_alias`: a period alias → the **offset alias** (``ME``, ``QE-DEC``, ``YE-DEC``, ``h``) for
  the GluonTS functions that call ``to_offset`` (``get_seasonality``, ``time_features_from_frequency_str``,
  the DeepAR estimator).

:func:`seasonal_periods` gives the cycles of a frequency (hourly: a day and a week, 24 and 168).
"""
from __future__ import annotations

import re

import pandas as pd

# unit spellings, old and new → the period alias's unit. Case matters where pandas' does (M month, ms
# millisecond, MS month start, S second); the words and unambiguous letters are read in any case.
_EXACT = {"M": "M", "ME": "M", "MS": "M", "ms": "ms", "S": "s", "s": "s", "L": "ms", "U": "us", "N": "ns",
          "T": "min", "min": "min", "H": "h", "h": "h"}
_ANY_CASE = {
    "y": "Y", "ye": "Y", "a": "Y", "ys": "Y", "as": "Y", "yearly": "Y", "annual": "Y", "year": "Y",
    "q": "Q", "qe": "Q", "qs": "Q", "quarterly": "Q", "quarter": "Q",
    "monthly": "M", "month": "M",
    "w": "W", "weekly": "W", "week": "W",
    "d": "D", "daily": "D", "day": "D",
    "hourly": "h", "hour": "h",
    "minute": "min", "second": "s", "us": "us", "ns": "ns",
}
_ANCHORED = {"Y": "DEC", "Q": "DEC", "W": "SUN"}  # the default anchor of an anchored period
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_PATTERN = re.compile(r"^\s*(\d*)\s*([A-Za-z]+)(?:-([A-Za-z]{3}))?\s*$")
_EXAMPLES = "h, 30min, D, W, M (or ME), Q (or QE), Y (or YE / A), or yearly / quarterly / monthly / daily / hourly"


class FrequencyError(ValueError):
    """A frequency string that names no frequency; the message lists the accepted spellings."""


def normalise_freq(freq: str) -> str:
    """The pandas period alias of ``freq``: ``'ME'``, ``'M'``, ``'MS'``, ``'monthly'`` → ``'M'``; ``'QE'``,
    ``'Q'`` → ``'Q-DEC'``; ``'A'``, ``'YE'`` → ``'Y-DEC'``; ``'H'``, ``'1h'`` → ``'h'``; ``'15T'`` → ``'15min'``;
    ``'W'`` → ``'W-SUN'``. The same under pandas 2 and 3. A start-anchored alias (``MS``, ``QS-JAN``, ``YS``)
    names the same periods as its end-anchored one (a month is a month), so both map to the period alias
    (a ``QS-JAN`` quarter runs Jan-Mar, i.e. ``Q-DEC``). Unknown spellings raise :class:`FrequencyError`."""
    if not isinstance(freq, str):
        raise FrequencyError(f"frequency {freq!r} is not a string; use one of {_EXAMPLES}")
    match = _PATTERN.match(freq)
    if not match:
        raise FrequencyError(f"unknown frequency {freq!r}; use one of {_EXAMPLES}")
    count, unit_text, anchor = match.groups()
    if unit_text.upper() in ("B", "BD", "C"):
        raise FrequencyError(f"frequency {freq!r}: business-day periods are deprecated in pandas; read the series as "
                             "daily (data.freq=D): the days without a value become missing steps")
    unit = _EXACT.get(unit_text) or _ANY_CASE.get(unit_text.lower())
    if unit is None:
        raise FrequencyError(f"unknown frequency {freq!r}; use one of {_EXAMPLES}")
    n = int(count) if count else 1
    if n < 1:
        raise FrequencyError(f"frequency {freq!r} has a zero multiple")
    starts = unit_text.upper() in ("MS", "QS", "YS", "AS")
    if anchor:
        anchor = anchor.upper()
        if unit in ("Y", "Q") and anchor in _MONTHS:
            if starts:  # a year or quarter starting in month m ends in month m - 1
                anchor = _MONTHS[(_MONTHS.index(anchor) - 1) % 12]
        elif unit == "W" and anchor in _DAYS:
            pass
        else:
            raise FrequencyError(f"frequency {freq!r}: {anchor!r} is not an anchor of {unit!r}")
    elif unit in _ANCHORED:
        anchor = _ANCHORED[unit]
    alias = f"{n if n > 1 else ''}{unit}" + (f"-{anchor}" if anchor else "")
    try:
        pd.Period("2000-01-01", freq=alias)
    except (ValueError, TypeError) as err:
        raise FrequencyError(f"frequency {freq!r} (read as {alias!r}) is not a period pandas knows: {err}") from None
    return alias


def offset_alias(freq: str) -> str:
    """The offset alias (for ``to_offset`` and the GluonTS functions built on it) of a frequency:
    ``'M'`` → ``'ME'``, ``'Q-DEC'`` → ``'QE-DEC'``, ``'Y-DEC'`` → ``'YE-DEC'``; others unchanged."""
    alias = normalise_freq(freq)
    match = re.match(r"^(\d*)([A-Za-z]+)(-\w+)?$", alias)
    count, unit, anchor = match.groups()
    if unit in ("M", "Q", "Y"):
        unit += "E"
    return f"{count}{unit}{anchor or ''}"


def same_frequency(a: str, b: str) -> bool:
    """True when two spellings name the same frequency ('h' and '1H', 'ME' and 'M')."""
    return normalise_freq(a) == normalise_freq(b)


def step_seconds(freq: str) -> float | None:
    """The length of one step in seconds for fixed-length frequencies (h, min, s, D), else None."""
    alias = normalise_freq(freq)
    match = re.match(r"^(\d*)(D|h|min|s|ms|us|ns)$", alias)
    if not match:
        return None
    unit = {"D": 86400.0, "h": 3600.0, "min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[match.group(2)]
    return (int(match.group(1)) if match.group(1) else 1) * unit


def seasonal_periods(freq: str) -> tuple[int, ...]:
    """The seasonal cycles of a frequency in steps, shortest first: sub-daily data has a daily and a
    weekly cycle (hourly: 24 and 168; 15min: 96 and 672), daily 7, weekly 52, monthly 12,
    quarterly 4; yearly none (1). A multiple that does not divide a cycle drops it."""
    alias = normalise_freq(freq)
    seconds = step_seconds(alias)
    if seconds is not None and seconds < 86400:
        cycles = [86400 / seconds, 7 * 86400 / seconds]
    else:
        match = re.match(r"^(\d*)([A-Za-z]+)", alias)
        n = int(match.group(1)) if match.group(1) else 1
        base = {"D": 7, "W": 52, "M": 12, "Q": 4}.get(match.group(2), 1)
        cycles = [base / n]
    periods = tuple(int(c) for c in cycles if c >= 2 and float(c).is_integer())
    return periods or (1,)


def daily_cycle(freq: str) -> int | None:
    """Steps per day for sub-daily frequencies whose step divides a day (hourly: 24), else None."""
    seconds = step_seconds(freq)
    if seconds is None or seconds >= 86400 or (86400 / seconds) % 1:
        return None
    return int(86400 / seconds)


def mase_period(freq: str) -> int:
    """MASE's seasonal period: GluonTS' convention for the frequency (hourly 24, daily 1, monthly 12, ...),
    so scores compare with published GluonTS figures."""
    from gluonts.time_feature import get_seasonality

    return get_seasonality(offset_alias(freq))


def infer_freq(stamps: pd.DatetimeIndex) -> str | None:
    """The frequency of sorted, unique timestamps, allowing gaps: ``pd.infer_freq`` when they are regular,
    else the smallest step between neighbours read as a calendar unit; None when nothing fits (fewer than
    two stamps, or no common step)."""
    if len(stamps) < 2:
        return None
    if len(stamps) >= 3:
        try:
            inferred = pd.infer_freq(stamps)
        except (ValueError, TypeError):
            inferred = None
        if inferred is not None:
            try:
                return normalise_freq(inferred)
            except FrequencyError:
                pass
    diffs = pd.Series(stamps[1:] - stamps[:-1])
    step = diffs.min()
    seconds = step.total_seconds()
    if seconds <= 0:
        return None
    days = seconds / 86400
    if 28 <= days <= 31:
        return "M"
    if 89 <= days <= 92:
        return "Q-DEC"
    if 365 <= days <= 366:
        return "Y-DEC"
    if days == 7:
        return f"W-{_DAYS[stamps[0].dayofweek]}"
    for unit, size in (("D", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds % size == 0:
            n = int(seconds // size)
            return f"{n if n > 1 else ''}{unit}"
    return None
