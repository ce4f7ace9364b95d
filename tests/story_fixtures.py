"""Fixture stories for near-duplicate detection, written for newswatch's tests.

Each `Story` is one news story as a wire service first published it. `copies(story)` gives
the ways outlets republish it (wrapped in page furniture, trimmed to its first paragraphs or
to the first alone, retitled, with one sentence edited, under a URL with tracking parameters): all the same
story. `SAME_DAY` pairs two different stories on one topic and day, and `UPDATES` pairs a
story with a later one that reports a new development: all different stories.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Story:
    key: str
    title: str
    paragraphs: tuple[str, ...]
    retitle: str  # the headline an outlet gives its copy
    edit: tuple[str, str]  # (a phrase as published, the same phrase as an outlet edited it)


@dataclass(frozen=True)
class Copy:
    """One published copy of a story."""

    story: str
    variant: str
    title: str
    body_html: str
    link: str


STORIES = (
    Story(
        "truce-east",
        "Ceasefire agreed along the eastern river front",
        (
            "Military commanders from both sides agreed on Tuesday to a ceasefire along the eastern river front, "
            "halting artillery exchanges that have emptied a dozen villages on either bank since the summer.",
            "The agreement, brokered by Swiss and Turkish mediators in a border town, takes effect at midnight and "
            "covers a stretch of roughly ninety kilometres between the two dams.",
            "Under its terms, heavy guns must be withdrawn at least fifteen kilometres from the water, and a joint "
            "commission of six officers will meet every morning to review reported violations.",
            "Volodymyr Zelensky welcomed the deal in an evening address but warned that earlier truces in the region "
            "had lasted only days, and said his forces would answer any attack.",
            "Farmers who fled the valley in July told reporters they would wait for a week of quiet before going back "
            "to harvest what remains of their sunflower fields.",
        ),
        "River front guns to fall silent at midnight under new deal",
        ("at least fifteen kilometres", "no less than twenty kilometres"),
    ),
    Story(
        "truce-south",
        "Port city truce lets fishing boats return to sea",
        (
            "A local truce around the southern port of Varna Bay took hold on Tuesday, allowing the first fishing "
            "boats in four months to leave the harbour under the watch of naval observers.",
            "Harbour officials said forty-two vessels sailed at dawn after both navies confirmed by radio that mines "
            "had been cleared from a narrow corridor leading out of the bay.",
            "The arrangement was negotiated separately from any wider talks and applies only to the coastal waters "
            "within twelve nautical miles of the port, a spokesman for the observers said.",
            "Fish prices in the city market, which had tripled since the spring, fell by a third within hours of the "
            "announcement, according to traders.",
            "Residents gathered on the sea wall to watch the boats go out, some waving flags they had kept hidden "
            "during the blockade.",
        ),
        "Fishermen back at sea as Varna Bay quiet holds",
        ("forty-two vessels sailed at dawn", "more than forty vessels sailed early in the morning"),
    ),
    Story(
        "truce-east-collapses",
        "Eastern river ceasefire collapses after night of shelling",
        (
            "The ceasefire along the eastern river front collapsed on Thursday, two days after it was signed, when "
            "both armies resumed shelling across the water and a pumping station near the northern dam caught fire.",
            "Each side blamed the other for the first shots, and the joint commission set up to police the truce "
            "failed to meet for its morning session, according to a mediator who asked not to be named.",
            "Emergency crews said at least nine civilians were wounded in two villages on the western bank, where "
            "families had started returning only the day before.",
            "The agreement, brokered by Swiss and Turkish mediators in a border town, took effect at midnight on "
            "Tuesday and covered a stretch of roughly ninety kilometres between the two dams.",
            "Mediators said they would try to bring the commanders back to the table before the weekend.",
        ),
        "Shelling resumes across the river as truce breaks down",
        ("at least nine civilians", "nine or more civilians"),
    ),
    Story(
        "aid-convoy",
        "UN convoy reaches besieged city of Sarvan with food and medicine",
        (
            "A convoy of thirty-five United Nations trucks reached the besieged city of Sarvan on Monday, bringing "
            "the first food and medicine to its estimated eighty thousand residents since early October.",
            "Antonio Guterres said in a statement that the delivery showed aid could get through when the parties "
            "allowed it, and called for daily access rather than one-off convoys.",
            "The trucks carried wheat flour, infant formula, insulin and chlorine tablets for the city's damaged "
            "water system, according to the World Food Programme.",
            "Doctors at the central hospital said they had been sterilising instruments in boiled rainwater and "
            "had run out of antibiotics two weeks ago.",
            "The convoy took eleven hours to cover sixty kilometres because of checkpoints and a bridge that had to "
            "be repaired before the heaviest lorries could cross.",
        ),
        "Food finally gets through to Sarvan after two-month siege",
        ("eleven hours to cover sixty kilometres", "nearly twelve hours to travel sixty kilometres"),
    ),
    Story(
        "aid-airdrop",
        "Aid agencies airdrop supplies to flooded highland villages",
        (
            "Relief agencies dropped food parcels and water filters by helicopter on Monday to highland villages "
            "cut off for a week by floods that washed away the only road into the Kessa valley.",
            "The Red Crescent said its crews made fourteen flights from the provincial capital, each carrying about "
            "a tonne of rice, lentils, cooking oil and blankets.",
            "Local officials estimate that nine thousand people are stranded and that landslides have destroyed "
            "more than three hundred homes on the steeper slopes.",
            "Engineers expect to reopen a single lane of the valley road within ten days if the rain eases, after "
            "which lorries will replace the helicopters.",
            "Schools in the district will stay closed until the end of the month and are being used as shelters.",
        ),
        "Helicopters carry rice and blankets to cut-off Kessa valley",
        ("fourteen flights from the provincial capital", "fifteen flights out of the regional capital"),
    ),
    Story(
        "aid-convoy-attacked",
        "Returning aid convoy shelled on road out of Sarvan",
        (
            "Three drivers were killed on Wednesday when artillery hit a United Nations convoy returning empty from "
            "the besieged city of Sarvan, the World Food Programme said, and all further deliveries were suspended.",
            "Antonio Guterres condemned the attack as a grave violation of humanitarian law and demanded that both "
            "armies explain how a marked convoy on an agreed route had come under fire.",
            "Two lorries were destroyed and four others damaged near the repaired bridge, forcing the remaining "
            "drivers to shelter in a roadside school until dusk.",
            "A convoy of thirty-five United Nations trucks had reached Sarvan on Monday, bringing the first food and "
            "medicine to the city since early October.",
            "Aid officials said they could not say when the next delivery would be attempted.",
        ),
        "Three drivers killed as Sarvan aid convoy comes under fire",
        ("Three drivers were killed", "Three lorry drivers died"),
    ),
    Story(
        "visit-ankara",
        "Lavrov arrives in Ankara for talks on grain corridor",
        (
            "Russian Foreign Minister Sergei Lavrov arrived in Ankara on Wednesday for two days of talks with his "
            "Turkish counterpart on reopening a shipping corridor for grain through the Black Sea.",
            "Turkish officials said the discussions would cover inspections of cargo ships, insurance for vessels "
            "and the release of crews held in port since the spring.",
            "It is the minister's first visit to Turkey this year, and diplomats in the capital said both sides "
            "hoped to announce a framework before the end of the week.",
            "Grain traders said shipping rates had risen by a quarter since the previous corridor closed, and that "
            "several importers in North Africa were running low on stocks.",
            "Security around the foreign ministry was tightened and several central streets were closed to traffic.",
        ),
        "Russian foreign minister in Turkey to discuss Black Sea grain route",
        ("two days of talks", "two rounds of talks"),
    ),
    Story(
        "visit-nairobi",
        "Guterres visits Nairobi refugee reception centre",
        (
            "UN Secretary-General Antonio Guterres visited a refugee reception centre on the edge of Nairobi on "
            "Wednesday and met families who had crossed the border from the north in recent weeks.",
            "He told reporters that the centre, built for two thousand people, was now sheltering more than six "
            "thousand, and appealed to donors to close a funding gap before the rainy season.",
            "Kenyan officials showed him a new water tank and a clinic that opened last month with help from a "
            "group of Nordic aid agencies.",
            "Guterres is due to meet the Kenyan president on Thursday before travelling to a regional summit on food security.",
            "The visit was his first to East Africa since taking part in climate talks in the region two years ago.",
        ),
        "UN chief meets newly arrived families at Kenyan camp",
        ("more than six thousand", "over six thousand"),
    ),
    Story(
        "visit-ankara-ends",
        "Ankara grain talks end without agreement as Lavrov leaves early",
        (
            "Talks in Ankara on a Black Sea grain corridor ended without agreement on Thursday, and Sergei Lavrov "
            "flew home several hours ahead of schedule, cancelling a planned joint news conference.",
            "Turkish diplomats said the two sides could not agree on who would inspect cargo ships, and that a "
            "draft framework circulated overnight had been rejected by the Russian delegation.",
            "Wheat futures rose sharply on the news, and two shipping firms said they would keep their vessels "
            "out of the region for the rest of the month.",
            "Turkish officials had said the discussions would cover inspections of cargo ships, insurance for "
            "vessels and the release of crews held in port since the spring.",
            "No date has been set for another round.",
        ),
        "Lavrov cuts Turkey visit short as grain deal stalls",
        ("several hours ahead of schedule", "hours earlier than planned"),
    ),
    Story(
        "prisoner-swap",
        "Hundreds of prisoners exchanged at northern border crossing",
        (
            "Two hundred and twelve prisoners of war were exchanged on Friday at a northern border crossing, the "
            "largest swap since the fighting began, with mediators from Qatar overseeing the handover.",
            "Buses carrying the released soldiers crossed a bridge in opposite directions shortly after noon, and "
            "relatives waiting on both sides broke through a police line to greet them.",
            "Officials said the exchange followed six weeks of negotiations over lists of names, including several "
            "dozen wounded men who will be treated in military hospitals.",
            "Both governments thanked the mediators and said further exchanges were under discussion.",
            "Red Cross staff interviewed each prisoner privately before the buses left to confirm they were going "
            "home of their own free will.",
        ),
        "Largest prisoner swap of the war completed at border bridge",
        ("six weeks of negotiations", "about six weeks of negotiation"),
    ),
    Story(
        "prisoner-swap-postponed",
        "Second prisoner exchange postponed over disputed names",
        (
            "A second exchange of prisoners planned for Monday was postponed at the last minute after one side "
            "added forty names to its list that the other said belonged to civilians, mediators said.",
            "Families who had travelled overnight to the northern border crossing were told to go home, and the "
            "buses waiting at the bridge were turned back in the afternoon.",
            "Qatari mediators said they remained in contact with both delegations and hoped to reschedule within a fortnight.",
            "Two hundred and twelve prisoners of war had been exchanged at the same crossing on Friday, the largest "
            "swap since the fighting began.",
            "Rights groups urged both governments not to let the dispute delay the release of the wounded.",
        ),
        "Families turned back as prisoner swap is called off",
        ("forty names", "some forty names"),
    ),
    Story(
        "flood-relief",
        "Delta flood relief camps overwhelmed as river keeps rising",
        (
            "Relief camps in the southern delta were overwhelmed on Saturday as the river rose for a fifth day, "
            "forcing another twenty thousand people from their homes in low-lying districts.",
            "Camp managers said they were short of tents, clean water and latrines, and that cases of diarrhoea "
            "among children had doubled since Thursday.",
            "The national disaster agency said the river was expected to peak on Monday, a metre above the level "
            "reached in the floods of a decade ago.",
            "Volunteers from nearby towns have been ferrying bread and bottled water by boat to families sheltering "
            "on the upper floors of schools and mosques.",
            "The government has asked neighbouring countries for water pumps and inflatable boats.",
        ),
        "Rising delta river pushes thousands more into crowded camps",
        ("had doubled since Thursday", "had more than doubled since Thursday"),
    ),
)

SAME_DAY = (("truce-east", "truce-south"), ("aid-convoy", "aid-airdrop"), ("visit-ankara", "visit-nairobi"))
UPDATES = (
    ("truce-east", "truce-east-collapses"),
    ("aid-convoy", "aid-convoy-attacked"),
    ("visit-ankara", "visit-ankara-ends"),
    ("prisoner-swap", "prisoner-swap-postponed"),
)
VARIANTS = ("original", "boilerplate", "trimmed", "first-paragraph", "retitled", "edited", "tracking")

# Page furniture as outlets add it: some lines Normalise knows, some it does not (bylines, dates, rights).
_FURNITURE_TOP = "<p>By our foreign desk staff</p><p>Updated 25 November 2026, 10:42 GMT</p><figcaption>File photo</figcaption>"
_FURNITURE_BOTTOM = (
    "<p>Read the original article</p><p>Share this article</p><p>© 2026 Harbour Light Media. All rights reserved.</p>"
)


def by_key(key: str) -> Story:
    return next(story for story in STORIES if story.key == key)


def body_html(paragraphs) -> str:
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)


def copies(story: Story) -> tuple[Copy, ...]:
    """The original and six republished copies of `story`, each under its own outlet's URL."""
    body = body_html(story.paragraphs)
    old, new = story.edit
    assert old in body, f"{story.key}: edit {old!r} is not in the text"
    path = f"world/{story.key}"
    return (
        Copy(story.key, "original", story.title, body, f"https://wire.example.org/{path}"),
        Copy(
            story.key,
            "boilerplate",
            story.title,
            _FURNITURE_TOP + body + _FURNITURE_BOTTOM,
            f"https://herald.example.com/{path}/",
        ),
        Copy(story.key, "trimmed", story.title, body_html(story.paragraphs[:2]), f"https://brief.example.net/{story.key}"),
        # As many feeds carry a story: its first paragraph as the item's description.
        Copy(
            story.key,
            "first-paragraph",
            story.title,
            body_html(story.paragraphs[:1]),
            f"https://digest.example.com/item/{story.key}",
        ),
        Copy(story.key, "retitled", story.retitle, body, f"https://observer.example.com/news/{story.key}-2026"),
        Copy(story.key, "edited", story.title, body.replace(old, new), f"https://daily.example.org/{path}"),
        Copy(
            story.key,
            "tracking",
            story.title,
            body,
            f"https://m.gazette.example.com/{path}?utm_source=rss&utm_medium=feed&fbclid=abc123",
        ),
    )
