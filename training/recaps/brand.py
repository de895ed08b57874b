"""The shop behind the recap emails (`Brand`): name, money and locale, colours, link templates, the
sender and the postal address, from one TOML or JSON file (`--brand FILE`, else `RECO_BRAND`); and
the signed per-customer token of the unsubscribe and view-in-browser links (`recap_token`).

One model for the batch job and for the service's recap page, so the page a customer opens from an
email is the email. Light on purpose (pydantic, the standard library, Babel to check the currency and
locale): the service imports it. docs/recaps.md documents the fields; docs/brand.example.toml is a
complete file.
"""

from __future__ import annotations

import hmac
import json
import string
import tomllib
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.core.errors import RecoError

if TYPE_CHECKING:
    from training.settings import Settings

PLACEHOLDER_NAME = "Your Shop Name"  # what a preview shows when no shop is configured; the job refuses it
DEFAULT_CURRENCY, DEFAULT_LOCALE = "GBP", "en_GB"
PREVIEW_KEY = b"reco-preview-only"  # signs the links of a --preview build that has no key: never valid when served
TOKEN_HEX = 32  # 128 bits of the HMAC-SHA256
UTM_SOURCE, UTM_MEDIUM = "recap", "email"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"  # RFC 8058

HexColour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]

# Which placeholders each link template takes, and which it must have.
_TEMPLATES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "shop_url": (frozenset(), frozenset()),
    "logo_url": (frozenset(), frozenset()),
    "product_url": (frozenset({"item_id"}), frozenset({"item_id"})),
    "image_url": (frozenset({"item_id"}), frozenset({"item_id"})),
    "unsubscribe_url": (frozenset({"user_id", "year", "token"}), frozenset({"user_id", "token"})),
    "view_url": (frozenset({"user_id", "year", "token"}), frozenset({"user_id", "token"})),
}


class InvalidBrand(RecoError):
    """The brand file (or RECO_STORE_NAME / RECO_CURRENCY) cannot be used."""


class Colours(BaseModel):
    """The email's colours (#rrggbb). Text on `primary` is white or near-black, whichever reads better."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    primary: HexColour = "#1b3a2f"  # the header band and the button
    accent: HexColour = "#3aa76d"  # the spend chart's bars
    highlight: HexColour = "#f29e4c"  # the busiest month's bar
    background: HexColour = "#f2efe9"  # around the email


class Brand(BaseModel):
    """The shop as its recap emails show it (every field documented in docs/recaps.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default=PLACEHOLDER_NAME, min_length=1, max_length=80)
    currency: str = DEFAULT_CURRENCY
    locale: str = DEFAULT_LOCALE
    sender: str | None = None  # the From of `--format eml`: "Shop <recaps@shop.example>"
    address: str | None = Field(default=None, max_length=300)  # postal address in the footer (anti-spam law)
    shop_url: str | None = None  # the call to action and the logo link
    logo_url: str | None = None
    logo_width: int = Field(default=140, ge=40, le=560)
    product_url: str | None = None  # "https://shop.example/p/{item_id}"
    image_url: str | None = None  # "https://cdn.shop.example/{item_id}.jpg"
    unsubscribe_url: str | None = None  # "https://shop.example/unsubscribe?u={user_id}&t={token}"
    view_url: str | None = None  # ".../v1/users/{user_id}/recaps/{year}?format=html&t={token}"
    colours: Colours = Colours()

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        from babel.numbers import list_currencies

        code = value.strip().upper()
        if code not in list_currencies():
            raise ValueError(f"{value!r} is not an ISO 4217 currency code such as GBP, EUR or USD")
        return code

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        from babel import Locale, UnknownLocaleError

        try:
            return str(Locale.parse(value.replace("-", "_")))
        except (UnknownLocaleError, ValueError):
            raise ValueError(f"{value!r} is not a locale such as en_GB, en_US, de_DE or fr_FR") from None

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, value: str | None) -> str | None:
        if value is not None and "@" not in parseaddr(value)[1]:
            raise ValueError(f"{value!r} is not an address such as 'Shop <recaps@shop.example>'")
        return value

    @model_validator(mode="after")
    def _link_templates(self) -> Brand:
        for name, (allowed, required) in _TEMPLATES.items():
            value = getattr(self, name)
            if value is not None:
                _check_template(name, value, allowed=allowed, required=required)
        if self.unsubscribe_url is not None and not self.unsubscribe_url.startswith("https://"):
            raise ValueError("unsubscribe_url must be an https:// address (one-click unsubscribe, RFC 8058)")
        return self

    @property
    def placeholder(self) -> bool:
        """True while the shop has no name of its own: fine for a preview, never sent."""
        return self.name == PLACEHOLDER_NAME

    @property
    def signs_links(self) -> bool:
        """Whether any link carries the signed token (so a key is needed)."""
        return self.unsubscribe_url is not None or self.view_url is not None

    def missing_for_sending(self, *, sender: bool = False) -> list[str]:
        """Fields an email needs before it is sent (anti-spam law: a way out and a postal address)."""
        wanted = ["name", "unsubscribe_url", "address"] + (["sender"] if sender else [])
        return [f for f in wanted if (self.placeholder if f == "name" else getattr(self, f) is None)]

    def public(self) -> dict[str, Any]:
        """The brand as the manifest records it (it holds no secret)."""
        return self.model_dump()

    def digest(self) -> str:
        """sha256 of the brand's fields: two runs with the same digest render the same emails."""
        import hashlib

        text = json.dumps(self.public(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    # --- links --------------------------------------------------------------------------------

    def product_link(self, item_id: str, *, year: int, content: str) -> str | None:
        """The item's page with the campaign's UTM parameters (None without a product_url)."""
        if self.product_url is None:
            return None
        return _utm_template(self.product_url, year, content).format(item_id=quote(str(item_id), safe=""))

    def image_link(self, item_id: str) -> str | None:
        """The item's picture (None without an image_url)."""
        return None if self.image_url is None else self.image_url.format(item_id=quote(str(item_id), safe=""))

    def shop_link(self, *, year: int, content: str) -> str | None:
        """The shop's home page with the campaign's UTM parameters (None without a shop_url)."""
        return None if self.shop_url is None else with_utm(self.shop_url, year=year, content=content)

    def customer_links(self, user_id: str, year: int, token: str) -> dict[str, str | None]:
        """A customer's links as the recap record carries them (`links`): view in browser,
        unsubscribe, and the List-Unsubscribe / List-Unsubscribe-Post header values."""
        values = {"user_id": quote(str(user_id), safe=""), "year": year, "token": token}
        unsubscribe = None if self.unsubscribe_url is None else self.unsubscribe_url.format(**values)
        return {
            "view_in_browser": None if self.view_url is None else self.view_url.format(**values),
            "unsubscribe": unsubscribe,
            "list_unsubscribe": None if unsubscribe is None else f"<{unsubscribe}>",
            "list_unsubscribe_post": None if unsubscribe is None else LIST_UNSUBSCRIBE_POST,
            "token": token if self.signs_links else None,
        }

    # --- colours ------------------------------------------------------------------------------

    @property
    def on_primary(self) -> str:
        """Text colour on the primary colour: white or near-black, whichever contrasts more."""
        return readable_on(self.colours.primary)

    @property
    def on_background(self) -> str:
        """Text colour around the email (the view-in-browser line)."""
        return readable_on(self.colours.background)


def with_utm(url: str, *, year: int, content: str) -> str:
    """`url` with utm_source=recap, utm_medium=email, utm_campaign=recap-<year>, utm_content=<content>
    (replacing utm_* parameters it had; its other parameters and fragment kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [
        ("utm_source", UTM_SOURCE),
        ("utm_medium", UTM_MEDIUM),
        ("utm_campaign", f"recap-{year}"),
        ("utm_content", content),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


@lru_cache(maxsize=256)
def _utm_template(template: str, year: int, content: str) -> str:
    """A link template with the UTM parameters already in it (an email has a dozen product links)."""
    marker = "RECOITEMIDMARKER"  # survives urlencode unchanged, unlike the braces of {item_id}
    tagged = with_utm(template.replace("{item_id}", marker), year=year, content=content)
    return tagged.replace("{", "{{").replace("}", "}}").replace(marker, "{item_id}")


def recap_token(key: bytes, user_id: str, year: int) -> str:
    """The customer's token for one year's recap links: HMAC-SHA256 of the year and the customer id
    under the secret key, as 32 hex characters."""
    return hmac.digest(key, f"recap:{year}:{user_id}".encode(), "sha256").hex()[:TOKEN_HEX]


def token_matches(key: bytes, token: str, user_id: str, year: int) -> bool:
    """Whether `token` is the customer's token for that year (compared in constant time)."""
    return hmac.compare_digest(recap_token(key, user_id, year).encode(), token.encode())


def readable_on(background: str) -> str:
    """Text for `background` (#rrggbb): white or the body's near-black, whichever contrasts more, or
    black on mid tones where neither reaches WCAG AA (4.5)."""
    best = max(("#ffffff", "#1f2933"), key=lambda text: contrast_ratio(text, background))
    return best if contrast_ratio(best, background) >= 4.5 else "#000000"


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _check_template(name: str, value: str, *, allowed: frozenset[str], required: frozenset[str]) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError:
        raise ValueError(f"{name} has an unbalanced brace: {value!r}") from None
    if fields - allowed:
        words = ", ".join("{" + f + "}" for f in sorted(allowed)) or "no placeholder"
        raise ValueError(f"{name} may use {words}, not {', '.join('{' + f + '}' for f in sorted(fields - allowed))}")
    if required - fields:
        raise ValueError(f"{name} must contain {', '.join('{' + f + '}' for f in sorted(required - fields))}")
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{name} must start with https:// (or http://): {value!r}")


def read_brand_file(path: Path) -> dict[str, Any]:
    """The fields of a brand file: TOML (`.toml`) or JSON (`.json`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidBrand(f"The brand file {path} cannot be read ({exc.strerror or exc}).") from None
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise InvalidBrand(f"The brand file {path} is not valid {kind} ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise InvalidBrand(f"The brand file {path} must hold a table of fields (docs/recaps.md).")
    return data


def make_brand(fields: dict[str, Any], *, source: str) -> Brand:
    """A Brand from fields; a bad field becomes one sentence naming it and `source`."""
    try:
        return Brand.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "is not a brand field (docs/recaps.md lists them)"
        elif first["type"] == "string_pattern_mismatch":
            message = "must be a colour like #1b3a2f"
        raise InvalidBrand(f"{source}: {where + ' ' if where else ''}{message}.") from None


def load_brand(settings: Settings, path: Path | None = None) -> Brand:
    """The shop for this process: the brand file (`path`, else RECO_BRAND); RECO_STORE_NAME and
    RECO_CURRENCY give the name and currency when the file leaves them out (or there is no file)."""
    fields: dict[str, Any] = {}
    if settings.recap_store_name:
        fields["name"] = settings.recap_store_name
    if settings.recap_currency:
        fields["currency"] = settings.recap_currency
    path = path or settings.recap_brand_file
    if path is not None:
        fields.update(read_brand_file(Path(path)))
        return make_brand(fields, source=f"The brand file {path}")
    return make_brand(fields, source="RECO_STORE_NAME / RECO_CURRENCY")


def signing_key(settings: Settings) -> bytes | None:
    """The secret that signs the links' tokens (RECO_RECAP_SIGNING_KEY), None when unset."""
    key = settings.recap_signing_key
    return None if key is None else key.get_secret_value().encode()


def key_id(key: bytes) -> str:
    """A name for a signing key that reveals nothing of it (for the manifest: which key signed)."""
    return hmac.digest(key, b"reco-recap-key-id", "sha256").hex()[:8]
