"""Fixture stories for the end-to-end tests, written for newswatch's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.feedserver import Entry

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

CEASEFIRE_TALKS = (
    "Lavrov arrives in Riyadh for talks on a ceasefire in Ukraine",
    "<p>Russian Foreign Minister Sergei Lavrov landed in Riyadh on Tuesday for talks with Saudi officials on "
    "a proposed ceasefire along the front line in Ukraine.</p><p>Diplomats said the two sides would discuss how "
    "a truce could be monitored and which prisoners might be exchanged once the guns fall silent.</p>",
)
AID_CONVOY = (
    "Guterres says UN aid convoys reached Darfur after weeks of delay",
    "<p>UN Secretary-General Antonio Guterres said on Monday that a convoy of 40 World Food Programme trucks "
    "carrying flour, medicine and water purification tablets had reached El Fasher.</p><p>Relief agencies had "
    "waited weeks for permission to deliver food to families displaced by the fighting.</p>",
)
DOMESTIC_DECREE = (
    "Putin signs decree raising payments to pensioners",
    "<p>Vladimir Putin signed a decree on Wednesday raising monthly payments to pensioners by eight percent "
    "from January.</p><p>The finance ministry said the increase would be covered by higher oil revenues.</p>",
)
RAIL_TENDER = (
    "Rail operator opens tender for new freight corridor",
    "<p>The national rail operator opened a tender on Thursday for a freight corridor linking two inland "
    "ports.</p><p>Bidders have until March to submit plans for signalling and track renewal.</p>",
)
NEW_TRUCE = (
    "Zelensky backs Easter truce proposal as talks resume in Geneva",
    "<p>Volodymyr Zelensky said on Friday that Ukraine would support a ceasefire over Easter if Russia agreed to "
    "international monitors, as negotiators met in Geneva to discuss a halt to the fighting.</p>"
    "<p>Both delegations said a truce must include an end to strikes on energy infrastructure.</p>",
)


def entry(story: tuple[str, str], link: str, hours_ago: float = 2, title: str | None = None, wrap: bool = False) -> Entry:
    """A feed entry carrying `story`; `wrap` adds the page furniture a republishing outlet adds."""
    headline, body = story
    if wrap:
        body = (
            "<p class='caption'>Photo: Observer staff / file</p>"
            + body
            + "<p>Read the original article</p><p>Share this article</p><p>Back to top</p>"
        )
    return Entry(title=title or headline, text=body, link=link, published=NOW - timedelta(hours=hours_ago))
