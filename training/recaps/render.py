"""A recap record as an email: email-safe HTML (inline CSS, table layout, a bar chart of spend by
month, no scripts, autoescaped) and its plain-text alternative, from the templates beside this file.

The service renders the same page for `GET /v1/users/{id}/recaps/{year}?format=html`: this module
needs Jinja2 only (imported on first use).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.recaps.rules import MONTHS

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).with_name("templates")
CHART_HEIGHT = 120  # pixels of the tallest bar
CHART_COLOUR, CHART_PEAK_COLOUR = "#3aa76d", "#f29e4c"
TEXT_CHART_WIDTH = 30  # characters of the longest bar in the text email


@cache
def _environment() -> jinja2.Environment:
    """The template environment, built on first use (importing this module reads no files)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda value: f"{int(value or 0):,}"
    env.filters["count"] = lambda value, noun: f"{int(value or 0):,} {noun}{'' if value == 1 else 's'}"
    env.filters["pct"] = lambda value: "±0%" if not value else f"{value:+.0f}%"
    env.filters["money"] = jinja2.pass_context(lambda ctx, value: f"{ctx['currency']}{float(value or 0):,.2f}")
    return env


def _chart(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars of spend by month: pixel height for HTML, characters for text; the peak stands out."""
    spend = [float(x or 0) for x in record.get("spend_by_month") or [0.0] * 12]
    top = max(spend) or 1.0
    return [
        {
            "month": MONTHS[m],
            "spend": value,
            "height": max(2, round(CHART_HEIGHT * value / top)) if value > 0 else 0,
            "chars": max(1, round(TEXT_CHART_WIDTH * value / top)) if value > 0 else 0,
            "colour": CHART_PEAK_COLOUR if value == top and value > 0 else CHART_COLOUR,
        }
        for m, value in enumerate(spend)
    ]


def _render(template: str, record: dict[str, Any], *, store: str, currency: str, unsubscribe_url: str | None) -> str:
    return (
        _environment()
        .get_template(template)
        .render(
            r=record,
            chart=_chart(record),
            chart_height=CHART_HEIGHT,
            store=store,
            currency=currency,
            unsubscribe_url=unsubscribe_url,
        )
    )


def render_recap_html(
    record: dict[str, Any], *, store: str = "us", currency: str = "£", unsubscribe_url: str | None = None
) -> str:
    """The recap as an email-safe HTML page (inline CSS, table layout, no scripts or images)."""
    return _render("recap_email.html", record, store=store, currency=currency, unsubscribe_url=unsubscribe_url)


def render_recap_text(
    record: dict[str, Any], *, store: str = "us", currency: str = "£", unsubscribe_url: str | None = None
) -> str:
    """The plain-text alternative of `render_recap_html`."""
    return _render("recap_email.txt", record, store=store, currency=currency, unsubscribe_url=unsubscribe_url)
