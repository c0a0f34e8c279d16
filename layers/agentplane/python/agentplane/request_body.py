"""The request body as every function accepts it, checked before routing: JSON (`application/json`,
UTF-8), parseable, and storable as it is.

Anything else is a problem that says what is wrong, never a 500: another media type is a 415; a
body that is not UTF-8 or not JSON, or nested past MAX_DEPTH, is a 400; a number DynamoDB cannot
hold (NaN, Infinity, past 38 significant digits or outside its exponent range), or an object key it
cannot hold (an empty one), is a 422. The
depth cap also bounds every free-form object (metadata, payloads, configs) a route stores.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from agentplane.errors import BadRequest, Unprocessable, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_DEPTH = 32
# DynamoDB numbers: up to 38 significant digits, magnitude from 1e-130 to under 1e126.
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_EXPONENT, MAX_NUMBER_EXPONENT = -130, 125


class _Unstorable(ValueError):
    """A number the body spells correctly but DynamoDB cannot hold."""


def admit(event: dict[str, Any]) -> None:
    """Check the event's body; leave it as plain UTF-8 JSON text with a normalised Content-Type."""
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
    raw = event.get("body")
    if method not in BODY_METHODS or not raw:
        return
    headers = event.setdefault("headers", {})
    declared = str(headers.get("content-type") or "")
    _check_media_type(declared)
    text = _utf8(raw, bool(event.get("isBase64Encoded")))
    document = _parse(text)
    depth, empty_key = _shape(document)
    if empty_key:
        raise Unprocessable("an object in the body has an empty key; DynamoDB cannot store one")
    if depth > MAX_DEPTH:
        raise BadRequest(f"the request body is nested {depth} levels deep; at most {MAX_DEPTH} are accepted")
    headers["content-type"] = JSON_MEDIA_TYPE
    event["body"] = text
    event["isBase64Encoded"] = False


def _check_media_type(declared: str) -> None:
    if not declared.strip():
        return  # no Content-Type: taken as JSON, as most clients mean it
    media_type, *params = (part.strip() for part in declared.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE}, not {media_type[:60]!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"send the body as UTF-8, not {value.strip()[:30]!r}")


def _utf8(raw: str, is_base64: bool) -> str:
    if not is_base64:
        return raw
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest("the request body is not valid UTF-8") from None


def _parse(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_integer, parse_float=_decimal)
    except _Unstorable as unstorable:
        raise Unprocessable(str(unstorable)) from None
    except RecursionError:
        raise BadRequest(f"the request body is nested too deeply; at most {MAX_DEPTH} levels are accepted") from None
    except ValueError as invalid:  # JSONDecodeError, or an integer past Python's digit limit
        raise BadRequest(f"the request body is not valid JSON: {str(invalid)[:120]}") from None


def _no_constant(name: str) -> Any:
    raise _Unstorable(f"{name} is not a number JSON allows or the API can store")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Unstorable(f"a number has {len(text.lstrip('-'))} digits; at most {MAX_NUMBER_DIGITS} can be stored")
    return int(text)


def _decimal(text: str) -> float:
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the JSON scanner only hands over valid numbers
        raise _Unstorable(f"{text[:40]} is not a number") from None
    digits = number.normalize().as_tuple().digits if number else ()
    exponent = number.adjusted() if number else 0
    if not number.is_finite() or len(digits) > MAX_NUMBER_DIGITS:
        raise _Unstorable(f"{text[:40]} cannot be stored: at most {MAX_NUMBER_DIGITS} significant digits")
    if not MIN_NUMBER_EXPONENT <= exponent <= MAX_NUMBER_EXPONENT:
        raise _Unstorable(f"{text[:40]} is out of range: numbers run from 1e-130 to under 1e126")
    return float(number)


def _shape(document: Any) -> tuple[int, bool]:
    """How deeply objects and arrays nest (a scalar is 0), and whether an object has an empty key,
    found without recursion."""
    deepest = 0
    empty_key = False
    pending = [(document, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            empty_key = empty_key or "" in value
            children: list[Any] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level, empty_key
        pending.extend((child, level + 1) for child in children)
    return deepest, empty_key
