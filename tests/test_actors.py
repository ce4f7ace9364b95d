"""Actor matching as a plain function: look-alike names, inflections, role aliases and their dates, evidence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.actors import match_actors
from pipelines.config import DEFAULT_WATCHLIST, Actor, RoleAlias, Watchlist, load_watchlist

WATCHLIST = load_watchlist(DEFAULT_WATCHLIST, environ={})
IN_2026 = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
IN_2010 = datetime(2010, 6, 1, tzinfo=UTC).timestamp()
IN_2005 = datetime(2005, 6, 1, tzinfo=UTC).timestamp()


def actors_in(text: str, published: float = IN_2026) -> list[str]:
    return [mention.actor for mention in match_actors(text, WATCHLIST, published=published)]


@pytest.mark.parametrize(
    "text, actor",
    [
        ("Talks with Путиным ended late", "Vladimir Putin"),
        ("Заява Путіна про переговори", "Vladimir Putin"),
        ("rozmowa z Putinem w Moskwie", "Vladimir Putin"),
        ("встреча с Лавровым в Анкаре", "Sergei Lavrov"),
        ("візит Зеленського до Варшави", "Volodymyr Zelensky"),
        ("spotkanie z Zełenskim w Kijowie", "Volodymyr Zelensky"),
        ("визит Зеленского в Анкару", "Volodymyr Zelensky"),
        ("PRESIDENT ZELENSKYY", "Volodymyr Zelensky"),
        ("António Guterres", "Antonio Guterres"),
        ("ANTONIO GUTERRES", "Antonio Guterres"),
        ("Генсек ООН Антониу Гутерриш", "Antonio Guterres"),
        ("Ławrow przyleciał", "Sergei Lavrov"),
    ],
)
def test_inflected_and_differently_written_names_match(text, actor):
    assert actors_in(text) == [actor]


@pytest.mark.parametrize(
    "text",
    [
        "Olena Zelenska visited a school",  # the president's wife
        "Олена Зеленська відвідала школу",
        "Елена Зеленская посетила школу",
        "Ołena Zełenska odwiedziła szkołę",
        "spotkanie z Ołeną Zełenską",
        "Putinism as an ideology",  # a longer word that starts with an alias
        "Guterresian optimism",
        "Lavrovsky Prospekt",
    ],
)
def test_look_alike_names_and_longer_words_do_not_match(text):
    assert actors_in(text) == []


def test_evidence_gives_alias_span_and_offsets_in_the_original_text():
    text = "Talks: Wołodymyr Zełenski met Sergei  Lavrov's deputy."
    mentions = match_actors(text, WATCHLIST, field="title", published=IN_2026)
    assert [(m.actor, m.alias, m.span, m.field) for m in mentions] == [
        ("Volodymyr Zelensky", "Wołodymyr Zełenski", "Wołodymyr Zełenski", "title"),
        ("Sergei Lavrov", "Sergei Lavrov", "Sergei  Lavrov", "title"),  # any run of spaces between the words
    ]
    assert all(text[m.start : m.end] == m.span for m in mentions)


def test_offsets_survive_folding_that_changes_length():
    text = "ﬁrst the Straße, then Путина"  # the ligature and ß fold to two letters each
    [mention] = match_actors(text, WATCHLIST, published=IN_2026)
    assert text[mention.start : mention.end] == "Путина" == mention.span


@pytest.mark.parametrize(
    "text, published, actors",
    [
        ("The UN chief said aid must reach Gaza.", IN_2026, ["Antonio Guterres"]),
        ("The UN chief said aid must reach Gaza.", IN_2010, []),  # before 2017 the role was someone else's
        ("the UN Secretary-General's envoy", IN_2026, ["Antonio Guterres"]),
        ("Генсек ООН призвал к перемирию", IN_2026, ["Antonio Guterres"]),
        ("the Russian President said on Monday", IN_2005, ["Vladimir Putin"]),
        ("the Russian President said on Monday", IN_2010, []),  # Medvedev's term, between Putin's two
        ("the Russian President said on Monday", IN_2026, ["Vladimir Putin"]),
        ("UN Chief Urges Ceasefire In Gaza", IN_2026, ["Antonio Guterres"]),  # a Title-Cased headline
    ],
)
def test_role_aliases_count_only_within_their_dates(text, published, actors):
    assert actors_in(text, published) == actors


@pytest.mark.parametrize(
    "text",
    [
        "Deputy UN Secretary-General Amina Mohammed opened the session",
        "the UN Under-Secretary-General for Humanitarian Affairs",
        "the former UN chief spoke",
        "an ex-UN chief spoke",
        "заместитель генсека ООН выступил",
        "former UN chief Ban Ki-moon wrote",
        "the Russian President Dmitry Medvedev said",  # followed by another person's name
        "the UN chief's predecessor toured the region",  # another person, named by their relation to the role
        "the UN chief’s likely successor",
        "the predecessor of the UN chief said",
        "предшественник генсека ООН заявил",
    ],
)
def test_roles_inside_longer_titles_or_before_another_name_do_not_count(text):
    assert actors_in(text) == []


def test_a_role_before_the_actors_own_name_is_found_by_the_name_once():
    mentions = match_actors("UN chief Antonio Guterres said", WATCHLIST, published=IN_2026)
    assert [(m.actor, m.span) for m in mentions] == [("Antonio Guterres", "Antonio Guterres")]


def test_a_role_alias_names_whoever_held_it_at_the_time():
    watchlist = Watchlist(
        actors=(
            Actor("Ban Ki-moon", ("Ban Ki-moon",), (RoleAlias("UN Secretary-General", None, datetime(2016, 12, 31).date()),)),
            Actor("Antonio Guterres", ("Guterres",), (RoleAlias("UN Secretary-General", datetime(2017, 1, 1).date()),)),
        )
    )
    text = "The UN Secretary-General visited the camp."
    assert [m.actor for m in match_actors(text, watchlist, published=IN_2010)] == ["Ban Ki-moon"]
    assert [m.actor for m in match_actors(text, watchlist, published=IN_2026)] == ["Antonio Guterres"]


@pytest.mark.parametrize(
    ("text", "actors"),
    [
        ("Une poutine au fromage coûte douze dollars à Montréal.", []),  # a dish, not a name: names are capitalised
        ("Цена лаврового листа выросла вдвое.", []),
        ("Poutine a reçu Lavrov au Kremlin.", ["Vladimir Putin", "Sergei Lavrov"]),
        ("The theatre honoured the actor Kirill Lavrov. Lavrov died in 2007.", []),  # a namesake, and him again
        ("The late Kirill Lavrov's theatre hosted Sergei Lavrov. Lavrov spoke briefly.", ["Sergei Lavrov"] * 2),
        ("Переговоры с Сергеем Лавровым продлились час. Лавров уехал.", ["Sergei Lavrov"] * 2),  # his own given name, declined
        ("On Monday Lavrov flew to Ankara.", ["Sergei Lavrov"]),
        ("Workers are repaving Putin Avenue in Grozny.", []),
        ("Ремонт проспекта Путина начнётся весной.", []),
        ("Bài báo phân tích chủ nghĩa Putin.", []),
        ("Упаковка «Лавров» подорожала.", []),  # a brand in quotation marks
        ("Владимир Владимирович провёл совещание.", ["Vladimir Putin"]),
        ("Музей Владимир Владимирович Маяковский открыт.", []),  # the patronymic before another surname
        ("Nguoi dung dau Lien Hop Quoc keu goi ngung ban.", ["Antonio Guterres"]),  # Vietnamese without its marks (đ too)
        ("Lawrow przyleciał do Ankary.", ["Sergei Lavrov"]),  # Polish written without ł
    ],
)
def test_a_name_is_the_actor_only_where_it_names_the_person(text, actors):
    assert actors_in(text, IN_2026) == actors
