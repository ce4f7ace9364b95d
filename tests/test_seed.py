"""The canonical case end to end: the real seed article, served as two outlets carry it, raises one alert.

The seed (../shared/seed/, a real report of the UN Secretary-General's visits to Moscow and Kyiv as an
aggregator republished it in machine-translated English, furniture and all) is read at test time and
wrapped in feeds here; its text is never copied into the project.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pytest

from tests.conftest import read_lines, run_newswatch, write_yaml

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"
ACTORS = ["Antonio Guterres", "Sergei Lavrov", "Vladimir Putin", "Volodymyr Zelensky"]

pytestmark = pytest.mark.skipif(not SEED_DIR.is_dir(), reason="../shared/seed is not beside this checkout (a user's clone)")


def seed_lines() -> list[str]:
    raw = next(SEED_DIR.glob("*.txt")).read_text(encoding="utf-8")
    return [line.strip() for line in raw.split("\n") if line.strip()]


def rss_item(title: str, link: str, published: datetime, html: str, full_page: bool) -> str:
    body = f"<content:encoded>{escape(html)}</content:encoded>" if full_page else f"<description>{escape(html)}</description>"
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link><guid>{escape(link)}</guid>"
        f"<pubDate>{published.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>{body}</item>"
    )


def rss(channel: str, items: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{channel}</title><link>http://127.0.0.1/</link><description>fixture</description>"
        f"{''.join(items)}</channel></rss>"
    ).encode()


def test_the_seed_raises_one_alert_naming_all_four_actors_with_both_sources(tmp_path, feed_server):
    lines = seed_lines()
    headline = lines[1]  # the page opens with its section name, then the headline
    first_paragraph = next(line for line in lines if len(line.split()) > 15)
    published = datetime.now(UTC) - timedelta(hours=3)
    page = "".join(f"<p>{escape(line)}</p>" for line in lines)
    feed_server.serve(
        "/aggregator.xml",
        rss("Aggregator", [rss_item(headline, "https://aggregator.example.vn/the-gioi/un-chief-visit", published, page, True)]),
    )
    feed_server.serve(
        "/brief.xml",
        rss(
            "Brief",
            [
                rss_item(
                    headline,
                    "https://brief.example.com/world/un-chief-trip",
                    published + timedelta(hours=1),
                    f"<p>{escape(first_paragraph)}</p>",
                    False,
                )
            ],
        ),
    )
    feeds = write_yaml(
        tmp_path / "feeds.yaml",
        {"feeds": [{"name": name, "url": feed_server.url(f"/{name}.xml")} for name in ("aggregator", "brief")]},
    )
    out = tmp_path / "out"
    result = run_newswatch("run", "--feeds", str(feeds), "--out", str(out), "--mode", "batch")
    assert result.returncode == 0, result.stderr

    [alert] = read_lines(out / "alerts.jsonl")
    assert set(alert["topics"]) == {"diplomatic_visit", "ceasefire", "humanitarian_aid"}
    assert alert["actors"] == ACTORS
    assert {source["feed"] for source in alert["sources"]} == {"aggregator", "brief"}
    items = read_lines(out / "items.jsonl")
    text = next(item["text"] for item in items if item["feed"] == "aggregator")
    for topic, passage in alert["evidence"]["passages"].items():
        assert passage["field"] == "text" and 0 <= passage["start"] < passage["end"] <= len(text), topic
    visit = alert["evidence"]["passages"]["diplomatic_visit"]
    assert "visit" in text[visit["start"] : visit["end"]].lower()
    assert "Back to top" not in text and "Photo" not in text  # furniture is not part of the item
