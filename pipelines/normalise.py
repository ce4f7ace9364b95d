"""Normalise: raw entries -> `Item`s with clean text, a canonical URL and UTC times.

Everything here is a plain function; the transform at the bottom only wraps them and
routes entries that cannot be normalised to the dead letters.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import unicodedata
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apache_beam as beam

from pipelines.furniture import strip_furniture
from pipelines.records import DeadLetter, Item

DEAD_LETTER = "dead_letter"
FUTURE_SKEW_S = 600  # a clock a little ahead is normal; more than this is a wrong date
_DROPPED_TAGS = {"script", "style", "noscript", "iframe", "svg", "object", "template", "head", "figcaption"}
_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "figure",
    "pre",
    "hr",
}
# Query parameters that say how a reader arrived, not which page: ad and social click ids, newsletter
# and analytics campaign tags. Removing them folds every shared link of one page into one URL.
_TRACKING_PARAMS = re.compile(
    r"^(utm_.*|fbclid|gclid|dclid|gbraid|wbraid|msclkid|yclid|ttclid|twclid|li_fat_id|mc_cid|mc_eid|mkt_tok"
    r"|_hsenc|_hsmi|vero_.*|oly_.*|ns_.*|wt\.mc_.*|s_kwcid|igshid|_ga|_gl|ref|ref_src|cmpid|ocid|smid|ito"
    r"|at_medium|at_campaign|rss|feed|share|sr_share)$",
    re.I,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WORD = re.compile(r"\w+", re.UNICODE)


class NormaliseError(ValueError):
    pass


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in _DROPPED_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _DROPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip_depth:
            self.parts.append(data)


@lru_cache(maxsize=1024)
def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment: entities unescaped, scripts and styles dropped, one line per block.

    Remembered for the last bodies: ParseEntries reads a poll's bodies to find its repeated lines, and
    Normalise reads the same bodies right after it in the same worker."""
    extractor = _TextExtractor()
    extractor.feed(html or "")
    extractor.close()
    text = unicodedata.normalize("NFC", "".join(extractor.parts))
    lines = (re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def canonical_url(url: str) -> str:
    """The URL that every copy of one page shares; "" for anything that is not http(s)."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = parts.hostname.lower().rstrip(".")
    if not host:  # "http://./": no host once the root dot goes
        return ""
    for prefix in ("www.", "amp.", "m.", "mobile."):
        if host.startswith(prefix) and host.count(".") > 1:
            host = host[len(prefix) :]
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    segments = [s.strip() for s in parts.path.split("/") if s.strip() and s.strip().lower() != "amp"]
    path = "/" + "/".join(segments)
    path = re.sub(r"\.amp(\.html?)?$", r"\1", path, flags=re.I)
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not _TRACKING_PARAMS.match(k) and k.lower() not in ("amp", "outputtype")
    )
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def fingerprint(title: str, text: str) -> str:
    """Hash of the words of the body (of the title too when the body is short), case- and punctuation-blind."""
    words = _WORD.findall(text.casefold())
    if len(words) < 12:
        words = _WORD.findall(title.casefold()) + words
    return hashlib.sha1(" ".join(words).encode("utf-8")).hexdigest()[:20]


def publication_time(published: tuple | None, fetched_at: float) -> tuple[float, bool]:
    """UTC epoch of the entry's date, or fetch time (flagged) when it is missing or in the future."""
    if published:
        try:
            epoch = float(calendar.timegm(tuple(published) + (0, 0, 0)[: 9 - len(published)]))
        except (TypeError, ValueError, OverflowError):
            return fetched_at, True
        if epoch <= fetched_at + FUTURE_SKEW_S:
            return epoch, False
    return fetched_at, True


def normalise_entry(raw: dict) -> Item:
    title = " ".join(html_to_text(raw.get("title", "")).split())
    text = strip_furniture(title, html_to_text(raw.get("body_html", "")), frozenset(raw.get("repeated_lines", ())))
    if not title and not text:
        raise NormaliseError("entry has neither a title nor any text")
    url = canonical_url(raw.get("link", ""))
    guid = (raw.get("guid") or "").strip()
    content_print = fingerprint(title, text)
    if url:
        identity = "url:" + url
    elif guid:
        identity = f"guid:{raw['feed']}:{guid}"
    else:
        identity = "content:" + content_print
    published, estimated = publication_time(raw.get("published"), raw["fetched_at"])
    return Item(
        feed=raw["feed"],
        url=url,
        guid=guid,
        title=title or text.split("\n", 1)[0][:200],
        text=text,
        published=published,
        published_estimated=estimated,
        fetched_at=raw["fetched_at"],
        identity_key=hashlib.sha1(identity.encode("utf-8")).hexdigest()[:20],
        fingerprint=content_print,
    )


class NormaliseFn(beam.DoFn):
    def process(self, raw: dict):
        try:
            yield normalise_entry(raw)
        except NormaliseError as err:
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER, DeadLetter(raw["feed"], raw.get("link", ""), "normalise", str(err), raw["fetched_at"], is_item=True)
            )


class Normalise(beam.PTransform):
    """Raw entry dicts -> Item (main) and DeadLetter (`dead_letter`)."""

    def expand(self, entries):
        return entries | "Normalise" >> beam.ParDo(NormaliseFn()).with_outputs(DEAD_LETTER, main="items")
