"""Amounts in a currency: how many decimals each currency is written with, so a yen price is
1500 (never 1500.00) and 1500.50 yen is refused rather than stored.

The digits are CLDR's (through Babel), the figures people write prices in: JPY, KRW, HUF have
none, EUR and USD two, KWD and BHD three. Amounts are stored to two decimals, so a three-digit
currency's amount is shown with its third digit as 0 (1.250 KWD)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache


@lru_cache(maxsize=512)
def minor_digits(currency: str) -> int:
    """How many decimals `currency` (an ISO 4217 code) is written with."""
    # Imported on first use: most commands never show an amount.
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency.upper())


def _unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


def fits(amount: Decimal, currency: str) -> bool:
    """Whether `amount` is written with no more decimals than `currency` has."""
    return amount == amount.quantize(_unit(currency))


def nearest(amount: Decimal, currency: str) -> Decimal:
    """The amount of `currency` nearest to `amount` (1500.50 JPY -> 1500): what a refusal
    suggests writing instead."""
    return amount.quantize(_unit(currency), rounding=ROUND_HALF_UP)


def in_currency(amount: Decimal, currency: str) -> Decimal:
    """`amount` with exactly the decimals of `currency` (1500.00 JPY -> 1500, 35 EUR -> 35.00).
    Nothing is rounded away: an amount stored before its currency's digits were checked
    (1500.50 JPY) is answered as it is, not as a price nobody agreed to."""
    written = nearest(amount, currency)
    return written if written == amount else amount


def digits_said(currency: str) -> str:
    """ "JPY amounts are whole numbers", "EUR amounts have at most 2 decimals"."""
    digits = minor_digits(currency)
    if digits == 0:
        return f"{currency} amounts are whole numbers"
    return f"{currency} amounts have at most {digits} decimal{'s' if digits > 1 else ''}"
