"""Kubernetes resource quantities: parsing, rounding to millicores and bytes, formatting."""

from decimal import Decimal

import pytest

from dockyard.schemas.quantity import (
    cpu_millis,
    format_cpu,
    format_memory,
    memory_bytes,
    parse_quantity,
)

VALID = [
    # (quantity, exact value, millicores, bytes)
    ("500m", Decimal("0.5"), 500, 1),
    ("2", Decimal(2), 2000, 2),
    ("0.5", Decimal("0.5"), 500, 1),
    (".5", Decimal("0.5"), 500, 1),
    ("5.", Decimal(5), 5000, 5),
    ("+1", Decimal(1), 1000, 1),
    ("128Mi", Decimal(128 * 2**20), 128 * 2**20 * 1000, 128 * 2**20),
    ("1Gi", Decimal(2**30), 2**30 * 1000, 2**30),
    ("1.5Gi", Decimal(3 * 2**29), 3 * 2**29 * 1000, 3 * 2**29),
    ("1G", Decimal(10**9), 10**12, 10**9),
    ("100k", Decimal(100_000), 10**8, 100_000),
    ("1e3", Decimal(1000), 10**6, 1000),
    ("1E3", Decimal(1000), 10**6, 1000),
    ("2e-3", Decimal("0.002"), 2, 1),
    ("1E", Decimal(10**18), 10**21, 10**18),
    ("100n", Decimal("1e-7"), 1, 1),
    ("1u", Decimal("1e-6"), 1, 1),
    ("0.0001", Decimal("0.0001"), 1, 1),
    ("0", Decimal(0), 0, 0),
    ("1.00000000000000000000000000000001", Decimal("1.00000000000000000000000000000001"), 1001, 2),
    (1, Decimal(1), 1000, 1),
    (0.25, Decimal("0.25"), 250, 1),
    (1e-07, Decimal("1e-7"), 1, 1),
]


@pytest.mark.parametrize(("quantity", "value", "millis", "size"), VALID, ids=[repr(case[0]) for case in VALID])
def test_valid_quantity(quantity, value, millis, size):
    assert parse_quantity(quantity) == value
    assert cpu_millis(quantity) == millis
    assert memory_bytes(quantity) == size


INVALID = [
    ("lots", '"lots" is not a quantity'),
    ("", '"" is not a quantity'),
    ("1Gi ", '"1Gi " is not a quantity'),
    ("1Gi\n", '"1Gi\\n" is not a quantity'),
    ("1ki", '"1ki" is not a quantity'),
    ("1GB", '"1GB" is not a quantity'),
    ("1.5.5", '"1.5.5" is not a quantity'),
    ("1e3.5", '"1e3.5" is not a quantity'),
    ("e3", '"e3" is not a quantity'),
    ("0x10", '"0x10" is not a quantity'),
    ("nan", '"nan" is not a quantity'),
    (True, "True is not a quantity"),
    (None, "None is not a quantity"),
    (float("inf"), "inf is not a quantity"),
    ("9223372036854775808", '"9223372036854775808" is too large'),
    ("8Ei", '"8Ei" is too large'),
    ("1e999999999999999999", '"1e999999999999999999" is too large'),
    ("1e99999999999999999999", '"1e99999999999999999999" is too large'),
]


@pytest.mark.parametrize(("quantity", "message"), INVALID, ids=[repr(case[0]) for case in INVALID])
def test_invalid_quantity(quantity, message):
    with pytest.raises(ValueError) as raised:
        parse_quantity(quantity)
    assert str(raised.value) == message


def test_largest_quantity_is_int64():
    assert memory_bytes("9223372036854775807") == 2**63 - 1


@pytest.mark.parametrize(
    ("millis", "text"),
    [(500, "500m"), (2000, "2"), (0, "0"), (1500, "1500m"), (1, "1m")],
    ids=["millicores", "whole-cores", "zero", "fraction-of-core", "one-millicore"],
)
def test_format_cpu(millis, text):
    assert format_cpu(millis) == text
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (128 * 2**20, "128Mi"),
        (2**30, "1Gi"),
        (1536, "1536"),
        (3 * 2**29, "1536Mi"),
        (10**9, "1G"),
        (1500, "1500"),
        (2000, "2k"),
        (0, "0"),
        (7, "7"),
    ],
    ids=[
        "mebibytes",
        "gibibyte",
        "not-a-whole-kibibyte",
        "one-and-a-half-gibibytes",
        "gigabyte",
        "not-a-whole-kilobyte",
        "kilobytes",
        "zero",
        "bytes",
    ],
)
def test_format_memory(size, text):
    assert format_memory(size) == text
    assert memory_bytes(text) == size
