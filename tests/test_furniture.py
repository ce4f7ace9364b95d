"""Page furniture removal: structural rules, any language, as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.furniture import line_key, repeated_lines, strip_furniture
from pipelines.normalise import normalise_entry

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"


def test_captions_and_lines_that_repeat_the_headline_go():
    title = "Relief convoy reaches Kharkiv suburbs"
    text = "\n".join(
        [
            "Relief convoy reaches Kharkiv suburbs - Photo 1.",
            "Twelve trucks with food and medicine crossed into the suburbs on Tuesday, the regional governor said.",
            "You are reading Relief convoy reaches Kharkiv suburbs at Example Portal",
        ]
    )
    assert strip_furniture(title, text) == text.split("\n")[1]


@pytest.mark.parametrize(
    "labels",
    [
        ["Thế Giới", "Back to top button", "Ảnh 1"],
        ["Świat", "Udostępnij", "Drukuj"],
        ["Мир", "Наверх", "Фото 2"],
        ["Monde", "Partager", "Imprimer"],
    ],
)
def test_short_labels_go_in_any_language(labels):
    body = "Negotiators met for a second day on Friday and agreed to extend the pause in fighting."
    assert strip_furniture("Talks go on", "\n".join([labels[0], body, *labels[1:]])) == body


def test_a_list_of_short_lines_goes_but_a_lone_caption_and_prose_stay():
    body = "Aid agencies said the crossing reopened at dawn and the first trucks were unloaded by noon."
    caption = "Trucks wait at the crossing on the Egyptian side of the border"
    related = ["Related", "Ceasefire talks stall in Doha", "Ministers to meet in Cairo next week", "Fuel prices climb again"]
    text = "\n".join([caption, body, *related])
    assert strip_furniture("Crossing reopens", text) == "\n".join([caption, body])


def test_copyright_and_teaser_lines_go():
    body = "The foreign minister arrived in Ankara on Monday for two days of talks."
    text = "\n".join([body, "© 2024 Example Media. All rights reserved.", "Lire aussi : la trêve tient toujours à Gaza."])
    assert strip_furniture("Minister in Ankara", text) == body


def test_lines_repeated_across_a_polls_items_are_furniture():
    cookie = "We use cookies to measure our audience and to show you relevant advertising, see our policy."
    places = ("Geneva", "Doha", "Cairo", "Ankara", "Riyadh")
    bodies = [f"Delegates in {place} said something new about the talks today.\n{cookie}" for place in places]
    repeated = repeated_lines(bodies)
    assert line_key(cookie) in repeated
    assert all(strip_furniture("Talks", body, repeated) == body.split("\n")[0] for body in bodies)


def test_a_paragraph_two_items_of_a_large_poll_share_is_not_furniture():
    shared = "The UN envoy said both delegations had accepted the proposal for a monitored truce."
    bodies = [f"Item {word} opens with its own first sentence about the day's events." for word in "abcdefghijklmnopqrst"]
    bodies[3] += "\n" + shared
    bodies[7] += "\n" + shared
    assert line_key(shared) not in repeated_lines(bodies)


def test_normalise_strips_furniture_before_the_fingerprint():
    body = "<p>Negotiators agreed on Sunday to extend the truce by three days, mediators said in a statement.</p>"
    plain = normalise_entry(
        {"title": "Truce extended", "body_html": body, "link": "http://a.example/1", "feed": "a", "fetched_at": 1.0}
    )
    furnished = normalise_entry(
        {
            "title": "Truce extended by three days",
            "body_html": "<p>World</p>" + body + "<p>Share</p><p>Print</p><p>Back to top</p>",
            "link": "http://b.example/2",
            "feed": "b",
            "fetched_at": 1.0,
        }
    )
    assert furnished.text == plain.text
    assert furnished.fingerprint == plain.fingerprint


@pytest.mark.skipif(not SEED_DIR.is_dir(), reason="../shared/seed is not beside this checkout (a user's clone)")
def test_the_seed_page_keeps_its_article_and_loses_its_furniture():
    raw = next(SEED_DIR.glob("*.txt")).read_text(encoding="utf-8")
    lines = [line.strip() for line in raw.split("\n") if line.strip()]
    title = lines[1]
    cleaned = strip_furniture(title, "\n".join(lines)).split("\n")
    prose = [line for line in lines if len(line.split()) > 15 and title not in line]
    assert cleaned == prose  # every paragraph of the article stays, in order, and nothing else


def test_a_short_credit_or_byline_at_either_edge_goes():
    body = "Mediators said on Sunday that both sides had agreed to a three-day pause in the fighting."
    text = "\n".join(["Photo: Observer staff / file", body, "By our correspondent in Cairo"])
    assert strip_furniture("Pause agreed", text) == body
