"""Decimal seconds text <-> exact int64 microseconds: the one parser and formatter of the CSVs.

Seconds are parsed exactly, so ``19440110.000001`` is 19440110000001 µs: from their digits, or
through float64 only for blocks where that is provably exact (see :func:`parse_seconds`).
Digits finer than 1 µs are rounded to the nearest µs; a tie is broken half to even (like
``round(Decimal(s) * 10**6)``) unless a format asks for half up (vidur's float-repr text, where
the tests pin ``ROUND_HALF_UP``). Formatting writes µs back in a file's recorded way of writing
them (integer, fixed decimals, shortest decimal, Python float repr) so a writer gives back the
same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from .csv import is_digits

US = 1_000_000
#: Most whole-second digits accepted: 12 whole + 6 µs digits always fit int64.
WHOLE_DIGITS = 12
Rounding = Literal["half-even", "half-up"]
Form = Literal["int", "float", "fixed", "repr"]

_PLAIN = r"^(?P<int>[0-9]{1,12})(?:\.(?P<frac>[0-9]+))?$"
#: Below this many µs (1e9 s) float64 reads a decimal of at most 6 fractional digits exactly
#: enough: the µs value is < 2**53, and parsing and scaling err by < 0.25 µs together.
_FLOAT_EXACT_US = 10**15
_EXPONENT = r"^[0-9]+(?:\.[0-9]*)?[eE][+-]?[0-9]{1,3}$"


@dataclass(frozen=True)
class Seconds:
    """Parsed seconds: µs per row (0 where not ``ok``), and which rows had sub-µs digits.

    ``spelling`` is the form every value was written in when one fast path read them all
    (``"int"``: ``5``; ``"float"``: ``19440110.0``; ``"decimal"``: 1 to 6 decimals, ``4.068``),
    else None; every value is then valid.
    """

    us: pa.Array
    ok: pa.Array
    sub_us: pa.Array
    spelling: str | None = None


def _none_of(raw: pa.Array) -> pa.Array:
    """An all-false mask as long as ``raw``."""
    return pc.equal(pc.binary_length(raw), -1)


def expand_exponents(raw: pa.Array) -> pa.Array:
    """``5e-05`` (how Python writes floats below 1e-4) as the plain decimal ``0.00005``.

    Such rows are rare (the first 100 µs of a trace), so they are rewritten one by one, exactly,
    with Decimal; an array without any is returned as is.
    """
    exp = pc.match_substring_regex(raw, _EXPONENT)
    if not pc.any(exp).as_py():
        return raw
    values = raw.to_pylist()
    for i in pc.indices_nonzero(exp).to_pylist():
        values[i] = format(Decimal(values[i]), "f")
    return pa.array(values, pa.string())


def parse_seconds(raw: pa.Array, *, rounding: Rounding = "half-even", exponents: bool = False,
                  float_noise: bool = False) -> Seconds:
    """Non-negative decimal seconds text (``5``, ``19440110.0``, ``4.314579``) as exact µs.

    ``exponents`` also accepts ``5e-05``. Sub-µs digits round to the nearest µs, ties by
    ``rounding``. ``float_noise``: digits within 1 ns of a µs (``5.8926549999999995``, float
    repr noise) do not count as ``sub_us``.
    """
    if exponents:
        raw = expand_exponents(raw)
    # Fast paths for the common spellings, chosen from the first value: `5` or `19440110.0`,
    # then any `4.068`; each costs a pass or two when it does not apply.
    if len(raw) and "." not in raw[0].as_py():
        ok = is_digits(raw, WHOLE_DIGITS)
        if pc.all(ok).as_py():
            us = pc.multiply(pc.cast(raw, pa.int64()), US)
            return Seconds(us, ok, _none_of(raw), "int")
    elif pc.all(pc.ends_with(raw, ".0")).as_py():
        whole = pc.utf8_slice_codeunits(raw, 0, -2)
        ok = is_digits(whole, WHOLE_DIGITS)
        if pc.all(ok).as_py():
            us = pc.multiply(pc.cast(whole, pa.int64()), US)
            return Seconds(us, ok, _none_of(raw), "float")
    fast = _parse_float(raw)
    if fast is not None:
        return Seconds(fast, pc.is_valid(raw), _none_of(raw), "decimal")
    return parse_exact(raw, rounding, float_noise)


def parse_exact(raw: pa.Array, rounding: Rounding = "half-even", float_noise: bool = False
                ) -> Seconds:
    """:func:`parse_seconds` from the digits alone, never through a float: the reference the
    fast paths must match (and the path of any block they do not take)."""
    sub_us = _none_of(raw)
    # Any decimal, without a regex: drop the point, read the digits as an integer and scale
    # by the missing fractional digits (exact for up to 6 of them).
    n = pc.binary_length(raw)
    point = pc.find_substring(raw, ".")  # -1 where there is none
    no_point = pc.less(point, 0)
    frac_len = pc.if_else(no_point, 0, pc.subtract(pc.subtract(n, point), 1))
    int_len = pc.if_else(no_point, n, point)
    digits = pc.replace_substring(raw, ".", "", max_replacements=1)
    ok = pc.and_(pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(int_len, WHOLE_DIGITS)),
                 pc.and_(pc.greater(int_len, 0), pc.or_(no_point, pc.greater(frac_len, 0))))
    if pc.all(pc.or_(pc.less_equal(frac_len, 6), pc.invert(ok))).as_py():
        if not pc.all(ok).as_py():
            digits = pc.if_else(ok, digits, "0")
        scale = pc.power(10, pc.subtract(6, pc.if_else(ok, frac_len, 6)))
        us = pc.multiply(pc.cast(digits, pa.int64()), pc.cast(scale, pa.int64()))
        return Seconds(us, ok, sub_us)
    return _parse_fine(raw, rounding, float_noise)


def _parse_float(raw: pa.Array) -> pa.Array | None:
    """µs of a block whose every value is a plain decimal (``4.068``) of at most 12 whole and 6
    fractional digits, below 1e9 s, read through float64 (~2x faster than the digits path,
    and exact there, see :data:`_FLOAT_EXACT_US`); None if any value is not such."""
    if raw.null_count or not len(raw) or not pa.types.is_string(raw.type):
        return None
    offsets, data = raw.buffers()[1:3]
    ends = pa.Array.from_buffers(pa.int32(), len(raw) + 1, [None, offsets], offset=raw.offset)
    first, last = ends[0].as_py(), ends[-1].as_py()
    if last == first:  # every value empty
        return None
    chars = pa.Array.from_buffers(pa.uint8(), last - first, [None, data], offset=first)
    lo, hi = pc.min_max(chars).values()
    if lo.as_py() < ord(".") or hi.as_py() > ord("9"):  # a sign, exponent, space, letter...
        return None
    try:  # the cast refuses "/", "1.2.3", ""; accepts ".5" and "5.", refused below
        seconds = pc.cast(raw, pa.float64())
    except pa.ArrowInvalid:
        return None
    point = pc.find_substring(raw, ".")
    lo, hi = pc.min_max(point).values()
    if lo.as_py() < 1 or hi.as_py() > WHOLE_DIGITS:  # every value has a point, not first
        return None
    lo, hi = pc.min_max(pc.subtract(pc.binary_length(raw), point)).values()
    if lo.as_py() < 2 or hi.as_py() > 7:  # 1 to 6 digits after the point
        return None
    # Values are >= 0 and within 0.25 µs of a whole µs (< 0.35 µs with the addition's own
    # rounding): adding 0.5 and truncating rounds to it.
    us = pc.cast(pc.add(pc.multiply(seconds, float(US)), 0.5), pa.int64(), safe=False)
    return us if pc.max(us).as_py() < _FLOAT_EXACT_US else None


def _parse_fine(raw: pa.Array, rounding: Rounding, float_noise: bool) -> Seconds:
    """The general path, for digits finer than 1 µs (rare in most files): rounds them."""
    parts = pc.extract_regex(raw, _PLAIN)
    ok = parts.is_valid()
    whole_s, frac_s = pc.struct_field(parts, "int"), pc.struct_field(parts, "frac")
    if not pc.all(ok).as_py():  # bad rows: they are reported by the caller
        whole_s, frac_s = pc.fill_null(whole_s, "0"), pc.fill_null(frac_s, "")
    frac = pc.utf8_rpad(frac_s, 6, "0")
    us = pc.add(pc.multiply(pc.cast(whole_s, pa.int64()), US),
                pc.cast(pc.utf8_slice_codeunits(frac, 0, 6), pa.int64()))
    if pc.max(pc.binary_length(frac)).as_py() > 6:  # rare: digits finer than 1 µs
        rest = pc.utf8_slice_codeunits(frac, 6)
        first, beyond = pc.utf8_slice_codeunits(rest, 0, 1), pc.utf8_slice_codeunits(rest, 1)
        more = pc.match_substring_regex(beyond, "[1-9]")
        if rounding == "half-up":
            up = pc.greater_equal(first, "5")
        else:
            odd = pc.equal(pc.bit_wise_and(us, 1), 1)
            up = pc.or_(pc.greater(first, "5"),
                        pc.and_(pc.equal(first, "5"), pc.or_(more, odd)))
        us = pc.add(us, pc.cast(up, pa.int64()))
        sub_us = pc.and_(ok, pc.or_(pc.greater(first, "0"), more))
        if float_noise:
            ns = pc.utf8_rpad(pc.utf8_slice_codeunits(rest, 0, 3), 3, "0")
            noise = pc.or_(pc.equal(ns, "000"), pc.equal(ns, "999"))  # within 1 ns of the µs
            sub_us = pc.and_(sub_us, pc.invert(noise))
    else:
        sub_us = _none_of(raw)
    return Seconds(pc.if_else(ok, us, 0), ok, sub_us)


def bad_kinds(raw: pa.Array, ok: pa.Array, negative: str = r"^-[0-9]"
              ) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The rows that are not ``ok``, split into empty, negative (``negative`` regex) and other,
    so each reader reports them with its own codes and messages."""
    bad = pc.invert(ok)
    empty = pc.equal(raw, "")
    neg = pc.and_(bad, pc.match_substring_regex(raw, negative))
    return empty, neg, pc.and_(bad, pc.invert(pc.or_(neg, empty)))


def format_seconds(us: pa.Array, form: Form = "int", digits: int = 0, *,
                   misfit: Literal["shortest", "six"] = "shortest") -> pa.Array:
    """Non-negative int64 µs as seconds text; null stays null; never loses a microsecond.

    ``int``: ``5`` (``fixed`` with 0 digits); ``fixed``: ``digits`` decimals (``5.000``);
    ``float``: the shortest decimal with at least one digit (``5.0``, ``2.25``); ``repr``:
    ``repr(float(us // 1e6) + (us % 1e6) / 1e6)``, how pandas wrote vidur's seconds. A value
    ``int``/``fixed`` cannot hold exactly gets its ``shortest`` decimal or all ``six`` digits.
    """
    secs = pc.divide(us, US)  # integer division; us >= 0, so this is the floor
    frac = pc.subtract(us, pc.multiply(secs, US))
    if form == "repr":
        return _repr_seconds(us, secs, frac)
    whole = pc.cast(secs, pa.string())
    six = pc.utf8_lpad(pc.cast(frac, pa.string()), 6, "0")
    if form == "fixed" and digits >= 6:
        return pc.binary_join_element_wise(whole, pc.binary_join_element_wise(
            six, "0" * (digits - 6), ""), ".")
    short = pc.utf8_rtrim(six, characters="0")
    short = pc.if_else(pc.equal(short, ""), "0", short)
    if form == "float":
        return pc.binary_join_element_wise(whole, short, ".")
    wide = short if misfit == "shortest" else six
    if form == "int" or digits <= 0:
        return pc.if_else(pc.equal(frac, 0), whole, pc.binary_join_element_wise(whole, wide, "."))
    fits = pc.less_equal(pc.binary_length(short), digits)
    return pc.binary_join_element_wise(
        whole, pc.if_else(fits, pc.utf8_rpad(short, digits, "0"), wide), ".")


def _repr_seconds(us: pa.Array, secs: pa.Array, frac: pa.Array) -> pa.Array:
    """``repr(float(secs) + frac / 1e6)`` per row, mostly by Arrow's float formatting."""
    seconds = pc.add(pc.cast(secs, pa.float64()), pc.divide(pc.cast(frac, pa.float64()),
                                                             float(US)))
    text = pc.cast(seconds, pa.string())
    # Arrow's shortest round-trip digits equal Python's, but Arrow writes "5" for 5.0 and
    # "0.00005" for 5e-05, and switches to exponents at other magnitudes than Python (below
    # 1e-4 s, i.e. 100 µs, and at 1e16 s); those rows are written by Python itself.
    odd = pc.or_(pc.or_(pc.match_substring(text, "e"), pc.invert(pc.match_substring(text, "."))),
                 pc.less(us, 100))
    if not pc.any(odd).as_py():
        return text
    values = text.to_pylist()
    floats = seconds.to_pylist()
    for i in pc.indices_nonzero(odd).to_pylist():
        values[i] = repr(floats[i])
    return pa.array(values, pa.string())


def differs(ok: pa.Array, rebuilt: pa.Array, raw: pa.Array) -> pa.Array:
    """Rows with a valid value whose text a writer would not rebuild byte for byte."""
    return pc.and_(ok, pc.fill_null(pc.not_equal(rebuilt, raw), True))


#: Largest seconds value whose microseconds fit int64.
MAX_SECONDS = float((1 << 63) // US)


@dataclass(frozen=True)
class FloatSeconds:
    """Float seconds as µs: ``us`` is null where the value is null or bad. ``sub_us`` marks
    values ``us`` does not give back (``us / 1e6`` is another float): digits finer than 1 µs,
    rounded, whose raw value a reader keeps. ``nan``, ``negative`` and ``huge`` (too large for
    int64 µs, infinity included) are the bad rows, for the caller to report."""

    us: pa.Array
    sub_us: pa.Array
    nan: pa.Array
    negative: pa.Array
    huge: pa.Array


def float_seconds(s: pa.Array) -> FloatSeconds:
    """Non-negative float64 seconds as int64 µs, rounded to the nearest (ties to even)."""
    s = pc.cast(s, pa.float64())
    nan = pc.fill_null(pc.is_nan(s), False)
    negative = pc.fill_null(pc.less(s, 0), False)
    huge = pc.fill_null(pc.greater(s, MAX_SECONDS), False)
    bad = pc.or_(nan, pc.or_(negative, huge))
    good = pc.if_else(bad, pa.scalar(None, pa.float64()), s)
    us = pc.cast(pc.round(pc.multiply(good, float(US))), pa.int64())
    back = pc.divide(pc.cast(us, pa.float64()), float(US))
    return FloatSeconds(us, pc.fill_null(pc.not_equal(back, good), False), nan, negative, huge)


# --- seconds styles: how a file writes its seconds (vidur, splitwise-sim) ---

#: How seconds are written: ``repr`` (pandas/Python float64 repr, vidur's files) or ``fixed``
#: with ``digits`` decimals (``"%.6f"``; ``digits`` 0 writes whole seconds as integers).
Style = dict[str, Any]

REPR: Style = {"style": "repr"}

FIXED6: Style = {"style": "fixed", "digits": 6}

def format_styled(us: pa.Array, style: Style) -> pa.Array:
    """Non-negative int64 µs as seconds text in a file's ``style`` (see :func:`seconds_style`).

    ``fixed`` rows that need more decimals than the style has (never in a file written so) get
    all 6.
    """
    if style.get("style") == "repr":
        return format_seconds(us, "repr")
    return format_seconds(us, "fixed", int(style.get("digits", 6)), misfit="six")

def seconds_style(raw: pa.Array, us: pa.Array) -> Style:
    """How a file writes its seconds, judged on one block: the style that reproduces most rows.

    Candidates are float64 repr (pandas' default, vidur's and splitwise-sim's files) and a fixed
    number of decimals, the first valid value's (``"%.6f"`` files, integer seconds).
    """
    ok = us.is_valid()
    raw, us = raw.filter(ok), us.filter(ok)
    if not len(us):
        return dict(FIXED6)
    first = raw[0].as_py()
    fixed: Style = {"style": "fixed", "digits": len(first.partition(".")[2]) if "e" not in
                    first.lower() else 6}
    scores = [(pc.sum(pc.equal(format_styled(us, s), raw)).as_py() or 0, s)
              for s in (REPR, fixed)]
    return dict(max(scores, key=lambda t: t[0])[1])  # a tie keeps repr, pandas' default
