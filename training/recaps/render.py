"""A recap record as an email for one shop (`Brand`): subject, preheader, an email-safe HTML page and
its plain-text alternative, from the templates beside this file.

Email-safe: tables and inline styles only (no <style>, no scripts), at most 600 px wide and fluid
below that (no media queries: blocks that wrap), every image with alt text and fixed width, every
text on a colour of its own (so clients that darken emails keep it readable), autoescaped. Numbers,
money and lists are formatted for the shop's locale by Babel. Products link to the shop with the
campaign's UTM parameters; the record's `links` (written by the recap job) give the unsubscribe
and view-in-browser links.

The service renders the same page for `GET /v1/users/{id}/recaps/{year}?format=html`: this module
needs Jinja2 and Babel only (imported on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.recaps.brand import Brand, contrast_ratio
from training.recaps.rules import MONTHS, PERSONAS, PersonaRule

if TYPE_CHECKING:
    import jinja2
    from babel import Locale

TEMPLATES = Path(__file__).with_name("templates")
CHART_HEIGHT = 120  # pixels of the tallest bar
TEXT_CHART_WIDTH = 30  # characters of the longest bar in the text email
WIDTH = 600  # the email's width on a desktop client; narrower screens get the same blocks wrapped
DEFAULT_BRAND = Brand()
# After the preheader: invisible characters, so inboxes do not run on into the email's first words.
PREHEADER_FILLER = "&#8199;&#847;" * 40
NO_LINKS = dict.fromkeys(("view_in_browser", "unsubscribe", "list_unsubscribe", "list_unsubscribe_post", "token"))
INK, MUTED, PAPER = "#1f2933", "#52606d", "#ffffff"  # body text, secondary text, the card


@dataclass(frozen=True)
class RenderedRecap:
    """One customer's email: what `--format eml` and `--format csv` hand to the email platform."""

    subject: str
    preheader: str
    html: str
    text: str


class Formats:
    """Numbers, money, percentages and lists in the shop's locale (Babel; the copy itself is English).

    Each email formats some fifty values and Babel takes about 15 µs a value, so results are kept:
    counts and amounts repeat across customers (and between an email's HTML and its text)."""

    def __init__(self, locale: str, currency: str) -> None:
        from babel import Locale

        self.locale: Locale = Locale.parse(locale)
        self.currency = currency
        self.money = cache_values(self._money)
        self.num = cache_values(self._num)

    def _money(self, value: float | None) -> str:
        from babel.numbers import format_currency

        return format_currency(float(value or 0), self.currency, locale=self.locale)

    def _num(self, value: float | None) -> str:
        from babel.numbers import format_decimal

        return format_decimal(value or 0, locale=self.locale)

    def count(self, value: int | None, noun: str) -> str:
        """ "1 order", "1,204 orders" (the nouns of these emails have regular plurals)."""
        return f"{self.num(value)} {noun if value == 1 else noun + 's'}"

    def pct(self, value: float | None) -> str:
        from babel.numbers import format_percent

        return "±0%" if not value else format_percent(value / 100, "+#,##0%;-#,##0%", locale=self.locale)

    def some_of(self, names: list[str], total: int | None) -> str:
        """ "Tea, Coffee and 3 more": the names shown, then how many were left out."""
        from babel.lists import format_list

        more = max(0, int(total or 0) - len(names))
        # The words around the names are the email's (English): "and", not the locale's "und".
        words = self.locale if self.locale.language == "en" else "en"
        return format_list([*names, f"{self.num(more)} more"] if more else names, locale=words)


def cache_values(function: Callable[[float | None], str]) -> Callable[[float | None], str]:
    """`function` with its last 65,536 answers kept."""
    return lru_cache(maxsize=1 << 16)(function)


@cache
def formats(locale: str, currency: str) -> Formats:
    """The formatter of a locale and currency (built once)."""
    return Formats(locale, currency)


@cache
def environment() -> jinja2.Environment:
    """The template environment, built on first use (importing this module reads no files)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def persona_of(record: dict[str, Any]) -> PersonaRule:
    """The persona's copy (article, shopper words) for a record's persona name."""
    persona = record.get("persona") or {}
    known = PERSONAS.get(str(persona.get("name")))
    if known is not None:
        return known
    name = str(persona.get("name") or "Shopper")  # a record of a persona since renamed
    return PersonaRule(name, "", "", "", article="an" if name[:1].lower() in "aeiou" else "a")


def persona_sentence(record: dict[str, Any]) -> str:
    """The persona in shopper words, with the customer's own evidence: "You love trying something
    new: 23 categories, 6 of them new to you."."""
    persona = persona_of(record)
    reason = str((record.get("persona") or {}).get("reason") or "")
    if not persona.description:
        return f"{reason[:1].upper()}{reason[1:]}." if reason else ""
    return f"{persona.description.rstrip('.')}: {reason}." if reason else persona.description


def subject(record: dict[str, Any], brand: Brand) -> str:
    """The email's subject line."""
    return f"Your {record['year']} with {brand.name}"


def preheader(record: dict[str, Any], brand: Brand) -> str:
    """The line inbox lists show after the subject."""
    f = formats(brand.locale, brand.currency)
    if record.get("kind") == "short":
        return f"{f.count(record.get('orders'), 'order')} and {f.money(record.get('spend'))}: your year at a glance."
    return (
        f"{f.count(record.get('orders'), 'order')}, {f.count(record.get('items'), 'item')}, "
        f"and you are {persona_of(record).title}. Here is your year."
    )


@dataclass(frozen=True)
class Styles:
    """The colours and fonts the HTML template writes into its inline styles, for one brand."""

    primary: str
    on_primary: str  # text on the header band and the button
    background: str
    on_background: str  # text around the email
    figure: str  # the big totals: the brand's colour when it reads on white, else the body text's
    ink: str = INK
    muted: str = MUTED
    paper: str = PAPER
    font: str = "font-family:Helvetica,Arial,sans-serif;"
    width: int = WIDTH


@lru_cache(maxsize=16)
def styles(brand: Brand) -> Styles:
    """A brand's styles, worked out once (the template writes them some forty times per email)."""
    from markupsafe import Markup

    primary = brand.colours.primary
    # Colours are validated #rrggbb: nothing to escape, so the template is told not to try.
    return Styles(
        primary=Markup(primary),
        on_primary=Markup(brand.on_primary),
        background=Markup(brand.colours.background),
        on_background=Markup(brand.on_background),
        figure=Markup(primary if contrast_ratio(primary, PAPER) >= 4.5 else INK),
        ink=Markup(INK),
        muted=Markup(MUTED),
        paper=Markup(PAPER),
        font=Markup(Styles.font),
    )


def _chart(record: dict[str, Any], brand: Brand, f: Formats) -> list[dict[str, Any]]:
    """Bars of spend by month: pixel height for HTML, characters for text; the busiest month (the
    one the email names under the chart: most orders) stands out."""
    spend = [float(x or 0) for x in record.get("spend_by_month") or [0.0] * 12]
    orders = list(record.get("orders_by_month") or [1 if x > 0 else 0 for x in spend])
    top = max(spend) or 1.0
    busiest = int((record.get("busiest_month") or {}).get("month") or 0) - 1
    return [
        {
            "month": MONTHS[m],
            "money": f.money(value),
            "orders": orders[m],
            "height": max(2, round(CHART_HEIGHT * value / top)) if value > 0 else 0,
            "chars": max(1, round(TEXT_CHART_WIDTH * value / top)) if value > 0 else 0,
            "colour": brand.colours.highlight if m == busiest else brand.colours.accent,
        }
        for m, value in enumerate(spend)
    ]


def _context(record: dict[str, Any], brand: Brand) -> dict[str, Any]:
    """Everything the two templates show, formatted once."""
    f = formats(brand.locale, brand.currency)
    year = int(record["year"])
    discoveries = record.get("discoveries") or {}
    return {
        "r": record,
        "brand": brand,
        "f": f,
        "lang": f.locale.language,
        "subject": subject(record, brand),
        "preheader": preheader(record, brand),
        "persona": persona_of(record),
        "persona_sentence": persona_sentence(record),
        "chart": _chart(record, brand, f),
        "chart_height": CHART_HEIGHT,
        "links": {**NO_LINKS, **(record.get("links") or {})},
        "new_categories": f.some_of(discoveries.get("categories") or [], discoveries.get("categories_count")),
        "new_brands": f.some_of(discoveries.get("brands") or [], discoveries.get("brands_count")),
        "product": lambda item_id, content: brand.product_link(item_id, year=year, content=content),
        "image": brand.image_link,
        "cta": brand.shop_link(year=year, content="cta"),
        "home": brand.shop_link(year=year, content="logo"),
        "s": styles(brand),
        "preheader_filler": PREHEADER_FILLER,
    }


def render_recap(record: dict[str, Any], *, brand: Brand | None = None) -> RenderedRecap:
    """Subject, preheader, HTML and text of one customer's recap email."""
    context = _context(record, brand or DEFAULT_BRAND)
    env = environment()
    return RenderedRecap(
        subject=context["subject"],
        preheader=context["preheader"],
        html=env.get_template("recap_email.html").render(context),
        text=env.get_template("recap_email.txt").render(context),
    )


def render_recap_html(record: dict[str, Any], *, brand: Brand | None = None) -> str:
    """The recap as an email-safe HTML page (the service serves it for ?format=html)."""
    return environment().get_template("recap_email.html").render(_context(record, brand or DEFAULT_BRAND))


def render_recap_card(record: dict[str, Any], *, brand: Brand | None = None) -> str:
    """The recap's body alone (no document around it): a card of the preview's contact sheet."""
    return environment().get_template("recap_card.html").render(_context(record, brand or DEFAULT_BRAND))


def render_recap_text(record: dict[str, Any], *, brand: Brand | None = None) -> str:
    """The plain-text alternative of `render_recap_html`."""
    return environment().get_template("recap_email.txt").render(_context(record, brand or DEFAULT_BRAND))
