"""The shop's settings (`Brand`): one file, checked field by field with one sentence per mistake; the
environment's short form; links with UTM parameters; the signed token; the secret kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.recaps.conftest import EXAMPLE_BRAND, SIGNING_KEY
from training.recaps.brand import (
    LIST_UNSUBSCRIBE_POST,
    PLACEHOLDER_NAME,
    Brand,
    InvalidBrand,
    contrast_ratio,
    load_brand,
    readable_on,
    recap_token,
    signing_key,
    token_matches,
    with_utm,
)
from training.settings import load_settings


def test_the_example_brand_file_is_complete_and_ready_to_send(brand: Brand) -> None:
    assert brand.name == "Greenleaf Grocers" and (brand.currency, brand.locale) == ("GBP", "en_GB")
    assert brand.missing_for_sending(sender=True) == [] and not brand.placeholder and brand.signs_links
    assert brand.colours.primary == "#1b3a2f"


def test_toml_and_json_files_give_the_same_brand(brand: Brand, tmp_path: Path) -> None:
    as_json = tmp_path / "brand.json"
    as_json.write_text(json.dumps(brand.public()))
    assert load_brand(load_settings(), as_json) == brand
    assert load_brand(load_settings(recap_brand_file=str(EXAMPLE_BRAND))) == brand  # RECO_BRAND


def test_environment_short_form_and_the_placeholder(tmp_path: Path) -> None:
    assert load_brand(load_settings()).placeholder and load_brand(load_settings()).name == PLACEHOLDER_NAME
    short = load_brand(load_settings(recap_store_name="Smoke Grocers", recap_currency="eur"))
    assert (short.name, short.currency, short.placeholder) == ("Smoke Grocers", "EUR", False)
    # A file's fields win over the short form; what the file leaves out, the short form gives.
    file = tmp_path / "brand.toml"
    file.write_text('name = "From The File"\n')
    both = load_brand(load_settings(recap_store_name="From Env", recap_currency="USD"), file)
    assert (both.name, both.currency) == ("From The File", "USD")


def test_settings_read_only_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRAND", "STORE_NAME", "CURRENCY", "SIGNING_KEY", "RECAP_SIGNING_KEY"):
        monkeypatch.setenv(name, "junk")
    settings = load_settings()
    assert settings.recap_brand_file is None and settings.recap_store_name is None
    assert settings.recap_currency is None and settings.recap_signing_key is None


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ('name = "A"\ncolours = { primary = "green" }', "colours.primary must be a colour like #1b3a2f"),
        ('name = "A"\nlogo = "x"', "logo is not a brand field"),
        ('currency = "£"', "'£' is not an ISO 4217 currency code"),
        ('locale = "xx_YY"', "'xx_YY' is not a locale"),
        ('product_url = "https://s.example/p/{sku}"', "product_url may use {item_id}, not {sku}"),
        ('product_url = "https://s.example/p"', "product_url must contain {item_id}"),
        ('unsubscribe_url = "https://s.example/u?u={user_id}"', "unsubscribe_url must contain {token}"),
        ('unsubscribe_url = "http://s.example/u?u={user_id}&t={token}"', "unsubscribe_url must be an https://"),
        ('view_url = "javascript:alert({user_id}{token})"', "view_url must start with https://"),
        ('sender = "nobody"', "'nobody' is not an address"),
        ('name = "A', "is not valid TOML"),
    ],
)
def test_a_bad_brand_file_is_one_sentence_naming_the_field(tmp_path: Path, text: str, sentence: str) -> None:
    file = tmp_path / "brand.toml"
    file.write_text(text + "\n")
    with pytest.raises(InvalidBrand) as raised:
        load_brand(load_settings(), file)
    message = str(raised.value)
    assert sentence in message and str(file) in message and "\n" not in message, message


def test_a_missing_brand_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(InvalidBrand, match="cannot be read"):
        load_brand(load_settings(), tmp_path / "nope.toml")


def test_product_links_carry_the_campaign(brand: Brand) -> None:
    link = brand.product_link("I 7/8", year=2025, content="picks")
    assert link == (
        "https://greenleaf.example/p/I%207%2F8?utm_source=recap&utm_medium=email&utm_campaign=recap-2025&utm_content=picks"
    )
    # A template's own query and fragment are kept, its old utm_* replaced; ids in the query are quoted.
    other = Brand(product_url="https://s.example/item?id={item_id}&utm_source=old#reviews")
    assert other.product_link("a&b", year=2024, content="staple") == (
        "https://s.example/item?id=a%26b&utm_source=recap&utm_medium=email&utm_campaign=recap-2024"
        "&utm_content=staple#reviews"
    )
    assert with_utm("https://s.example/", year=2025, content="cta").endswith("utm_campaign=recap-2025&utm_content=cta")
    assert Brand().product_link("x", year=2025, content="picks") is None


def test_customer_links_are_signed_per_customer_and_year(brand: Brand) -> None:
    token = recap_token(SIGNING_KEY, "C/1", 2025)
    links = brand.customer_links("C/1", 2025, token)
    assert links["unsubscribe"] == f"https://greenleaf.example/email/unsubscribe?u=C%2F1&y=2025&t={token}"
    assert (
        links["view_in_browser"] == f"https://reco.greenleaf.example/v1/users/C%2F1/recaps/2025?format=html&t={token}"
    )
    assert links["list_unsubscribe"] == f"<{links['unsubscribe']}>"
    assert links["list_unsubscribe_post"] == LIST_UNSUBSCRIBE_POST == "List-Unsubscribe=One-Click"
    assert len(token) == 32 and token == recap_token(SIGNING_KEY, "C/1", 2025)
    assert len({token, recap_token(SIGNING_KEY, "C/2", 2025), recap_token(SIGNING_KEY, "C/1", 2024)}) == 3
    assert recap_token(b"another-key-entirely", "C/1", 2025) != token
    assert token_matches(SIGNING_KEY, token, "C/1", 2025)
    assert not token_matches(SIGNING_KEY, token, "C/2", 2025) and not token_matches(SIGNING_KEY, "x", "C/1", 2025)
    assert Brand(name="No Links").customer_links("C1", 2025, "")["unsubscribe"] is None


def test_the_signing_key_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-signing-key-value"
    monkeypatch.setenv("RECO_RECAP_SIGNING_KEY", secret)
    settings = load_settings()
    assert signing_key(settings) == secret.encode()
    assert secret not in repr(settings) and secret not in str(settings) and secret not in settings.model_dump_json()
    monkeypatch.setenv("RECO_RECAP_SIGNING_KEY", "short")
    with pytest.raises(Exception, match="RECO_RECAP_SIGNING_KEY"):
        load_settings()


def test_text_on_the_brand_colours_stays_readable() -> None:
    assert readable_on("#1b3a2f") == "#ffffff" and readable_on("#ffe066") == "#1f2933"
    for colour in ("#000000", "#1b3a2f", "#3aa76d", "#f29e4c", "#ffe066", "#ffffff", "#7f7f7f"):
        assert contrast_ratio(readable_on(colour), colour) >= 4.5, colour
    assert round(contrast_ratio("#000000", "#ffffff"), 1) == 21.0
