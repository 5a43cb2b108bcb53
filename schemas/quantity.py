"""Kubernetes resource quantities ("500m", "128Mi", "1e3"): the wire type, parsing and formatting."""

import decimal
import json
import re
from typing import Annotated

import msgspec

# Kubernetes' grammar: a signed decimal number, then a binary-SI suffix, a
# decimal-SI suffix or a decimal exponent. "E" alone is exa; "E3" is an exponent.
QUANTITY_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$"

Quantity = Annotated[str, msgspec.Meta(pattern=QUANTITY_PATTERN)]

# Amounts beyond an int64 of the base unit (Kubernetes' Quantity.Value()) are refused.
MAX_QUANTITY = decimal.Decimal(2**63 - 1)

_SUFFIX_FACTORS = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    "Ki": decimal.Decimal(2**10),
    "Mi": decimal.Decimal(2**20),
    "Gi": decimal.Decimal(2**30),
    "Ti": decimal.Decimal(2**40),
    "Pi": decimal.Decimal(2**50),
    "Ei": decimal.Decimal(2**60),
}
_BINARY_SUFFIXES = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")
_DECIMAL_SUFFIXES = ("E", "P", "T", "G", "M", "k")
_QUANTITY = re.compile(QUANTITY_PATTERN)


def parse_quantity(q: str | int | float) -> decimal.Decimal:
    """The exact value of a quantity in its base unit (cores, bytes, pods)."""
    text = _quantity_text(q)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{_quoted(q)} is not a quantity")
    number, suffix = text[: match.end(1)], text[match.end(1) :]
    context = _exact_context(len(text))
    try:
        if suffix in _SUFFIX_FACTORS:
            value = context.multiply(decimal.Decimal(number), _SUFFIX_FACTORS[suffix])
        else:
            value = context.create_decimal(text)
    except decimal.DecimalException:
        raise ValueError(f"{_quoted(q)} is too large") from None
    if value.copy_abs() > MAX_QUANTITY:
        raise ValueError(f"{_quoted(q)} is too large")
    return value


def cpu_millis(q: str | int | float) -> int:
    """A CPU quantity in millicores, rounded up as Kubernetes does."""
    value = parse_quantity(q)
    return _ceil(value.scaleb(3, _exact_context(len(value.as_tuple().digits))))


def memory_bytes(q: str | int | float) -> int:
    """A memory (or any byte) quantity in bytes, rounded up."""
    return _ceil(parse_quantity(q))


def format_cpu(millis: int) -> str:
    """Millicores as a quantity: whole cores without a suffix, else millicores."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: int) -> str:
    """Bytes as a quantity with the largest exact binary (else decimal) suffix."""
    if size == 0:
        return "0"
    for suffix in _BINARY_SUFFIXES + _DECIMAL_SUFFIXES:
        factor = int(_SUFFIX_FACTORS[suffix])
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def _quantity_text(q: str | int | float) -> str:
    # bool is an int to Python but never a quantity; repr keeps a float exact.
    if isinstance(q, bool) or not isinstance(q, (str, int, float)):
        raise ValueError(f"{_quoted(q)} is not a quantity")
    return repr(q) if isinstance(q, float) else str(q)


def _quoted(q: object) -> str:
    # JSON quoting keeps an error on one line whatever the input holds.
    return json.dumps(q, ensure_ascii=False) if isinstance(q, str) else repr(q)


def _exact_context(digits: int) -> decimal.Context:
    # Wide enough that neither rounding nor under/overflow can alter a value.
    return decimal.Context(prec=digits + 40, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _ceil(value: decimal.Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING))
