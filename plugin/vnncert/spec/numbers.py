"""VNN-LIB constants are real numbers: their exact values, and how they sit among the float64s.

A constant c is kept as a pair (near, dir): `near` is the float64 nearest to c (round to
nearest, ties to even; ±inf beyond the float64 range) and `dir` is the sign of c - near
(0 when c is a float64 number). The pair orders constants exactly except when two of them share
both near and a non-zero dir (they then lie in the same open interval between two float64s),
and it gives, without the exact value:

- the outward roundings (`round_up`, `round_down`): the engines read those, so that an `unsat`
  proof is about a superset of the property's sets;
- an exact comparison with any float64 L: L <= c iff L < up or (L == up and dir == 0), and
  L < c iff L < up, where up = round_up(c) (no float64 lies strictly between c and up);
- the rounding of c to a narrower float type (`round_to_dtype`, e.g. float32), correctly
  rounded from c itself, not from near (no double rounding).

Numbers are decimals in the SMT-LIB / VNN-COMP spelling: `[+-]digits[.digits][(e|E)[+-]digits]`
(the exponent and the sign are VNN-COMP's extensions of SMT-LIB). NaN, infinities and any other
spelling Python's float() would take (`1_000`, `inf`) are not numbers of VNN-LIB.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Optional, Tuple

import numpy as np

DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity|snan)\Z", re.IGNORECASE)
# a number token may have at most this many characters (beyond it the exact value costs
# super-linear time, and no property needs more than 17 significant digits)
MAX_NUMBER_CHARS = 1000
# |decimal exponent| at most this (1e-10000 is far below any float; the bound keeps exact values small)
MAX_EXPONENT = 10000
MAX_SHOWN = 200  # characters of an offending token an error message may quote


def shown(token: str) -> str:
    """A token for an error message: at most MAX_SHOWN characters of it, quoted."""
    if len(token) <= MAX_SHOWN:
        return repr(token)
    return repr(token[:MAX_SHOWN]) + f"... ({len(token)} characters)"


def clip(token: str) -> str:
    """A token for an error message, unquoted: at most MAX_SHOWN characters of it."""
    return token if len(token) <= MAX_SHOWN else token[:MAX_SHOWN] + f"... ({len(token)} characters)"


def number_problem(token: str) -> Optional[str]:
    """Why `token` is not a VNN-LIB number (None when it is one)."""
    if len(token) > MAX_NUMBER_CHARS and DECIMAL.match(token[:MAX_NUMBER_CHARS]):
        return f"number with {len(token)} characters (at most {MAX_NUMBER_CHARS} are accepted)"
    if NON_FINITE.match(token):
        return (f"{shown(token)} is not a number of VNN-LIB: constants are finite decimal numbers "
                f"(NaN and infinities are refused)")
    if not DECIMAL.match(token):
        return None if not token else "not a number"
    m = re.search(r"[eE]([+-]?[0-9]+)\Z", token)
    if m and (len(m.group(1).lstrip("+-").lstrip("0")) > 6 or abs(int(m.group(1))) > MAX_EXPONENT):
        return f"exponent of {shown(token)} is out of range (at most {MAX_EXPONENT} in magnitude)"
    return None


def parse_decimal(token: str) -> Fraction:
    """The exact value of a VNN-LIB number token; ValueError (with the reason) otherwise."""
    why = number_problem(token)
    if why is not None or not DECIMAL.match(token):
        raise ValueError(why or "not a number")
    return Fraction(token)


def decimal_nearest(token: str) -> Tuple[float, int]:
    """(near, dir) of a number token without building a Fraction; ValueError when it is not one."""
    why = number_problem(token)
    if why is not None or not DECIMAL.match(token):
        raise ValueError(why or "not a number")
    near = float(token)  # correctly rounded (CPython's dtoa)
    if math.isinf(near):
        return near, (-1 if near > 0 else 1)
    mant, _, exp = token.lower().partition("e")
    e = int(exp) if exp else 0
    neg = mant.startswith("-")
    ip, _, fp = mant.lstrip("+-").partition(".")
    M = int((ip + fp) or "0")
    e -= len(fp)
    if neg:
        M = -M
    p, q = near.as_integer_ratio()
    if e >= 0:
        lhs, rhs = M * 10 ** e * q, p
    else:
        lhs, rhs = M * q, p * 10 ** -e
    return near + 0.0, (lhs > rhs) - (lhs < rhs)


def nearest(c: Fraction) -> Tuple[float, int]:
    """(near, dir) of an exact value: the nearest float64 (ties to even, ±inf past the range)
    and the sign of c - near."""
    n, m = c.numerator, c.denominator
    try:
        near = n / m  # int / int is correctly rounded in CPython
    except OverflowError:
        return (math.inf if c > 0 else -math.inf), (-1 if c > 0 else 1)
    if math.isinf(near):
        return near, (-1 if near > 0 else 1)
    p, q = near.as_integer_ratio()
    lhs, rhs = n * q, p * m  # c - near = (n q - p m) / (m q), m q > 0
    return near + 0.0, (lhs > rhs) - (lhs < rhs)


def next_up(x: np.ndarray) -> np.ndarray:
    """np.nextafter(x, inf) for float64 arrays without NaN, by the bit pattern (faster)."""
    x = np.asarray(x, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    bits = x.view(np.int64)
    out = np.where(x >= 0, bits + 1, bits - 1).view(np.float64)
    return np.where(x == np.inf, x, out)


def next_down(x: np.ndarray) -> np.ndarray:
    """np.nextafter(x, -inf) for float64 arrays without NaN."""
    return -next_up(-np.asarray(x, dtype=np.float64))


def round_up(near, dirs):
    """The least float64 >= c, from (near, dir) (arrays or scalars)."""
    out = np.asarray(near, dtype=np.float64) + 0.0
    if dirs is None:
        return out
    if out.ndim == 0:
        return next_up(out) if dirs > 0 else out
    idx = np.flatnonzero(np.asarray(dirs) > 0)
    out.reshape(-1)[idx] = next_up(out.reshape(-1)[idx])
    return out


def round_down(near, dirs):
    """The greatest float64 <= c, from (near, dir)."""
    out = np.asarray(near, dtype=np.float64) + 0.0
    if dirs is None:
        return out
    if out.ndim == 0:
        return next_down(out) if dirs < 0 else out
    idx = np.flatnonzero(np.asarray(dirs) < 0)
    out.reshape(-1)[idx] = next_down(out.reshape(-1)[idx])
    return out


def near_of_up(up, dirs):
    """near from the outward value round_up(c) and dir."""
    up = np.asarray(up, dtype=np.float64)
    if dirs is None:
        return up
    return np.where(np.asarray(dirs) > 0, np.nextafter(up, -np.inf), up)


def near_of_down(down, dirs):
    """near from the outward value round_down(c) and dir."""
    down = np.asarray(down, dtype=np.float64)
    if dirs is None:
        return down
    return np.where(np.asarray(dirs) < 0, np.nextafter(down, np.inf), down)


def round_to_dtype(near: np.ndarray, dirs: Optional[np.ndarray], dtype) -> np.ndarray:
    """fl_T(c) as float64: c rounded to the nearest value of the float type T (ties to even).

    For T narrower than float64 every rounding boundary of T (a midpoint of two neighbours) is a
    float64; so c rounds like near unless near is such a midpoint and c is not (dir != 0), and
    then dir says which way."""
    near = np.asarray(near, dtype=np.float64)
    T = np.dtype(dtype)
    if T == np.dtype(np.float64) or T.kind != "f":
        return near + 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        t = near.astype(T)
        tf = t.astype(np.float64)
        if dirs is None:
            return tf
        dirs = np.asarray(dirs)
        cand = (tf != near) & (dirs != 0) & np.isfinite(tf)
        if not cand.any():
            return tf
        res = tf.copy()
        idx = np.flatnonzero(cand)
        tc, nc = t[idx], near[idx]
        toward = np.where(nc > tf[idx], np.inf, -np.inf).astype(T)
        other = np.nextafter(tc, toward).astype(np.float64)
        midpoint = (tf[idx] + other) / 2.0 == nc
        up = dirs[idx] > 0
        pick = np.where(up, np.maximum(tf[idx], other), np.minimum(tf[idx], other))
        res[idx] = np.where(midpoint, pick, tf[idx])
    return res


# ---- the direction of rounding of decimal literals, in bulk -------------------------------------------
_SPLIT = 134217729.0  # 2**27 + 1 (Dekker's split)


def _product_error(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """a * b - p exactly (rounded only in the last operation, whose sign is then exact), for
    p = fl(a * b) and operands far from overflow and underflow (Dekker's TwoProduct)."""
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


_POW5 = np.array([5 ** k for k in range(23)], dtype=np.int64)
_POW10 = np.array([float(10 ** k) for k in range(23)])  # all exact


def scaled_dirs(m: np.ndarray, k: np.ndarray, value: np.ndarray, divide: np.ndarray) -> np.ndarray:
    """sign(c - value) for c = m * 10**k (m / 10**k where `divide`), value = fl(c), with m an
    int64 array of values <= 2**53 and 0 <= k <= 22 (so m and 10**k are exact float64s)."""
    out = np.zeros(m.shape, dtype=np.int8)
    # exact already: m / 10**k when 5**k divides m (dividing by 2**k is exact here), m * 10**k <= 2**53
    todo = np.where(divide, (m % _POW5[k]) != 0, value > 9007199254740992.0)
    if not todo.any():
        return out
    idx = np.flatnonzero(todo)
    mf, p, v, dv = m[idx].astype(np.float64), _POW10[k[idx]], value[idx], divide[idx]
    r = np.empty(idx.size)
    if (~dv).any():  # c - value = m * p - value, exactly
        r[~dv] = _product_error(mf[~dv], p[~dv], v[~dv])
    if dv.any():  # sign(c - value) = sign(m - value * p)
        vd, pd = v[dv], p[dv]
        hi = vd * pd
        lo = _product_error(vd, pd, hi)
        r[dv] = (mf[dv] - hi) - lo  # mf - hi is exact (Sterbenz), one rounding last keeps the sign
    out[idx] = np.sign(r).astype(np.int8)
    return out


# ---- rows: exact coefficients --------------------------------------------------------------------------
def float_exact(v: Fraction) -> bool:
    """Whether v is a float64 number."""
    try:
        return Fraction(float(v)) == v
    except OverflowError:
        return False


def normalise_row(pairs, rhs: Fraction):
    """`sum c_i v_i <= rhs` with exact coefficients (list of (index, Fraction), none zero) ->
    (((index, float coefficient), ...), exact rhs), the same set of points:

    one variable: divided through by |c| (coefficient ±1); several whose coefficients are not
    all float64 numbers: multiplied by the least common denominator (a positive integer). A
    ValueError when even then a coefficient is not a float64 number."""
    if len(pairs) == 1:
        i, a = pairs[0]
        return ((i, 1.0 if a > 0 else -1.0),), rhs / abs(a)
    if pairs and not all(float_exact(v) for _, v in pairs):
        scale = math.lcm(*(v.denominator for _, v in pairs))
        pairs = [(i, v * scale) for i, v in pairs]
        rhs = rhs * scale
        if not all(float_exact(v) for _, v in pairs):
            raise ValueError("coefficients with too many significant digits: no scaling of this relation makes "
                             "them float64 numbers, so it cannot be evaluated exactly")
    return tuple((i, float(v)) for i, v in pairs), rhs


# ---- writing constants back -------------------------------------------------------------------------------
def terminating_decimal(q: Fraction) -> Optional[str]:
    """The exact positional decimal of q (with a fractional part), or None when q has none (its
    denominator has a prime factor other than 2 and 5, e.g. 1/3)."""
    num, den = q.numerator, q.denominator
    a = (den & -den).bit_length() - 1  # factors of 2
    rest = den >> a
    b = 0
    while rest % 5 == 0:
        rest //= 5
        b += 1
    if rest != 1:
        return None
    k = max(a, b)
    digits = str(abs(num) * (10 ** k // den)).rjust(k + 1, "0")
    head, tail = digits[:len(digits) - k], digits[len(digits) - k:].rstrip("0")
    return ("-" if num < 0 else "") + head + "." + (tail or "0")


def decimal_for(near: float, d: int) -> str:
    """A positional decimal (no exponent, with a fractional part) whose (nearest float64,
    direction) is (near, d): the float itself when d == 0, the shortest decimal of near when
    that lies on the right side of it, else a decimal a quarter ulp from near on side d."""
    near = float(near)
    if not math.isfinite(near):
        raise ValueError(f"{near} cannot be written as a decimal")
    if d == 0:
        return terminating_decimal(Fraction(near))
    s = np.format_float_positional(near, unique=True, trim="0")
    s = s + "0" if s.endswith(".") else s
    if nearest(Fraction(s)) == (near, d):
        return s
    other = float(np.nextafter(near, math.inf if d > 0 else -math.inf))
    return terminating_decimal(Fraction(near) + (Fraction(other) - Fraction(near)) / 4)
