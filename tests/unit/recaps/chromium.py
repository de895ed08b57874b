"""Headless Chromium for the recap tests: pages drawn as a real browser draws them, measured there.

`layout(pages, widths)` opens every page in an iframe of the given widths (one browser start for all),
and a script in the harness (never in the email) reports, per page and width, the page's scroll width,
every visible element that sticks out of the viewport, every box whose content is cut off (overflow
hidden), every image, and every text's colour on its background.
`screenshot(...)` saves a PNG. The flags are PITFALLS.md's (root, no network, fresh profile).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(os.environ.get("RECO_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
DARK = "--blink-settings=forceDarkModeEnabled=true"  # the darkening of WebView-based mail apps (Gmail on Android)


def chromium() -> str:
    """The browser's path; skip without one, fail when CI=true."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium on PATH (make browser)")
        pytest.skip("headless Chromium is not installed (make browser) to render the email")
    return found


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with its own fresh profile."""
    with tempfile.TemporaryDirectory(prefix="reco-chromium-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def screenshot(page: Path, shot: Path, *, width: int, height: int, dark: bool = False) -> Path:
    """A PNG of `page` in a `width` × `height` window (Chromium's forced dark mode with `dark`)."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    done = run(*([DARK] if dark else []), f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-800:]
    return shot


AUDIT = """
<script>
function colour(text) {  // "rgb(1, 2, 3)" / "rgba(1, 2, 3, 0)" -> [r, g, b, a]
  const v = text.match(/[\\d.]+/g).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
}
function background(el, win) {  // the first opaque background colour behind an element
  for (let e = el; e; e = e.parentElement) {
    const c = colour(win.getComputedStyle(e).backgroundColor);
    if (c[3] > 0.5) return c;
  }
  return [255, 255, 255, 1];
}
function audit(frame) {
  const win = frame.contentWindow, doc = frame.contentDocument, width = win.innerWidth;
  const out = {name: frame.dataset.name, width: width, scrollWidth: doc.documentElement.scrollWidth,
               height: Math.ceil(doc.body.getBoundingClientRect().bottom),
               overflow: [], clipped: [], texts: [], images: []};
  for (const el of doc.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;  // hidden (the preheader) or empty
    if (r.right > width + 0.5 || r.left < -0.5)
      out.overflow.push({tag: el.tagName, id: el.id, left: Math.round(r.left), right: Math.round(r.right),
                         text: (el.textContent || '').trim().slice(0, 60)});
    if (el.tagName === 'IMG') out.images.push({alt: el.getAttribute('alt'), width: r.width});
    if (el.scrollWidth > el.clientWidth + 1 && win.getComputedStyle(el).overflowX !== 'visible')
      out.clipped.push({tag: el.tagName, cls: String(el.className), scrollWidth: el.scrollWidth,
                        clientWidth: el.clientWidth});
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (own) {
      const st = win.getComputedStyle(el);
      out.texts.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40), colour: colour(st.color),
                      background: background(el, win), size: parseFloat(st.fontSize),
                      bold: parseInt(st.fontWeight) >= 700,
                      box: [r.left + frame.offsetLeft, r.top + frame.offsetTop, r.right + frame.offsetLeft,
                            r.bottom + frame.offsetTop]});
    }
  }
  return out;
}
window.addEventListener('load', () => {  // after every frame has loaded
  const pre = document.createElement('pre');
  pre.id = 'audit';
  pre.textContent = JSON.stringify(Array.from(document.querySelectorAll('iframe')).map(audit));
  document.body.appendChild(pre);
});
</script>
"""


def harness(pages: dict[str, str], widths: tuple[int, ...], *, heights: dict[str, int] | None = None) -> str:
    """One page holding every page at every width, one below the other, each in its own iframe
    (4,000 px high, or the page's height from `heights`)."""
    frames = "".join(
        f'<iframe data-name="{html.escape(name)}" width="{w}" height="{(heights or {}).get(name, 4000)}" '
        f'frameborder="0" scrolling="no" style="display:block;border:0;margin:0" '
        f'srcdoc="{html.escape(page)}"></iframe>'
        for name, page in pages.items()
        for w in widths
    )
    return f'<!DOCTYPE html><html><body style="margin:0">{frames}{AUDIT}</body></html>'


def layout(
    pages: dict[str, str],
    widths: tuple[int, ...],
    tmp: Path,
    *,
    heights: dict[str, int] | None = None,
    shot: Path | None = None,
    dark: bool = False,
) -> list[dict[str, Any]]:
    """Each page at each width, measured in Chromium (see the module docstring); with `shot`, also a
    screenshot of the whole harness (in Chromium's forced dark mode with `dark`)."""
    page = tmp / "harness.html"
    page.write_text(harness(pages, widths, heights=heights))
    # The harness's script runs on its load event (after every frame's); the virtual time budget lets
    # the loads finish (images fail at once: no network) before the DOM is dumped.
    flags = [DARK] if dark else []
    if shot is not None:
        total = sum((heights or {}).get(name, 4000) for name in pages) * len(widths)
        screenshot(page, shot, width=max(widths), height=total, dark=dark)
    done = run(*flags, "--virtual-time-budget=20000", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-800:]
    found = re.search(r'<pre id="audit">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-500:]
    return json.loads(html.unescape(found.group(1)))


def luminance(rgb: Any) -> float:
    """WCAG relative luminance of 0..255 channels."""
    channels = [c / 255 for c in rgb[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: Any, b: Any) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
