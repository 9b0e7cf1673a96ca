"""Synthetic fact sessions from Faker: memories to store and paraphrased questions about them.

A session is a dated conversation in which facts about people are stated ("Norma Fisher lives
in Sullivanport."). Some facts are later restated with a new value (the person moved), so a
question can ask for the current value or, with a date ("As of March 4, 2021, ..."), for the
value true then: the time bundle has something to decide. Every relation has six question
templates whose wording differs from the fact's, so retrieval cannot be plain word overlap.
The extractive answer is read back from the retrieved memory's text by the fact templates.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np
from faker import Faker

START = dt.date(2021, 1, 1)
HORIZON_DAYS = 720  # every session falls in [START, START + HORIZON_DAYS)
MIN_UPDATE_GAP = 90  # a restated fact comes at least this many days after the old one
UPDATE_FRACTION = 0.2

# relation: (fact template, Faker provider, mutable, question templates)
RELATIONS: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "job": (
        "{p} works as a {v}.",
        "job",
        True,
        (
            "What is {p}'s job?",
            "What does {p} do for a living?",
            "What is the occupation of {p}?",
            "Which profession does {p} have?",
            "{p} is employed in what role?",
            "What kind of work does {p} do?",
        ),
    ),
    "employer": (
        "{p} is employed by {v}.",
        "company",
        True,
        (
            "Which company does {p} work for?",
            "Who is {p}'s employer?",
            "What firm employs {p}?",
            "Where does {p} have a job, which business?",
            "Name the company that pays {p}.",
            "{p} is on the payroll of which organisation?",
        ),
    ),
    "city": (
        "{p} lives in {v}.",
        "city",
        True,
        (
            "Where does {p} live?",
            "Which city is {p}'s home?",
            "In what town does {p} reside?",
            "What is {p}'s place of residence?",
            "Where is {p}'s home located?",
            "Which place does {p} call home?",
        ),
    ),
    "email": (
        "{p}'s email address is {v}.",
        "email",
        True,
        (
            "What is {p}'s email?",
            "How can I send {p} an email?",
            "What e-mail address does {p} use?",
            "Which inbox reaches {p}?",
            "Give me the electronic mail address of {p}.",
            "To what address should I write to {p} online?",
        ),
    ),
    "phone": (
        "{p} can be reached by phone at {v}.",
        "phone_number",
        True,
        (
            "What is {p}'s phone number?",
            "How do I call {p}?",
            "Which number should I dial for {p}?",
            "What is the telephone number of {p}?",
            "At what number can {p} be rung?",
            "Give me a number to ring {p}.",
        ),
    ),
    "birthday": (
        "{p} was born on {v}.",
        "date_of_birth",
        False,
        (
            "When was {p} born?",
            "What is {p}'s birthday?",
            "What is the birth date of {p}?",
            "On what day was {p} born?",
            "When does {p} celebrate a birthday?",
            "What date of birth does {p} have?",
        ),
    ),
    "colour": (
        "{p}'s favourite colour is {v}.",
        "color_name",
        True,
        (
            "What colour does {p} like best?",
            "What is {p}'s favorite color?",
            "Which colour does {p} prefer?",
            "Which hue is {p}'s favourite?",
            "What color would {p} pick first?",
            "Tell me the colour {p} loves most.",
        ),
    ),
    "plate": (
        "{p}'s car has the licence plate {v}.",
        "license_plate",
        True,
        (
            "What is {p}'s license plate?",
            "Which plate is on {p}'s car?",
            "What registration does {p}'s vehicle carry?",
            "What number plate does {p} drive with?",
            "Which registration is on the car of {p}?",
            "Tell me the plate of {p}'s automobile.",
        ),
    ),
}
DATED_PREFIX = "As of {d}, "


@dataclass(frozen=True)
class Fact:
    """One stored memory: its text, the session day it was said, and its slots."""

    text: str
    day: int
    person: str
    relation: str
    value: str


@dataclass(frozen=True)
class Question:
    """A question, the day it refers to (None: now), the fact it asks for and its answer."""

    text: str
    day: int | None
    target: int  # index of the fact in the session list
    answer: str


def date_text(day: int) -> str:
    d = START + dt.timedelta(days=int(day))
    return f"{d:%B} {d.day}, {d.year}"


def parse_date(text: str) -> int | None:
    """The day of an "As of <Month> <d>, <yyyy>" phrase in a question, else None."""
    m = re.search(r"As of ([A-Z][a-z]+) (\d{1,2}), (\d{4})", text)
    if not m:
        return None
    d = dt.datetime.strptime(f"{m[1]} {m[2]} {m[3]}", "%B %d %Y").date()
    return (d - START).days


def _value(fake: Faker, provider: str) -> str:
    v = getattr(fake, provider)()
    return v.isoformat() if isinstance(v, dt.date) else str(v).replace("\n", " ")


def make_facts(n: int, seed: int) -> list[Fact]:
    """n facts in day order: people with several relations, about 20 % restated later."""
    fake = Faker()
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    names: list[str] = []
    seen: set[str] = set()
    keys: list[tuple[str, str]] = []
    n_updates = int(round(UPDATE_FRACTION * n)) if n >= 5 else 0
    while len(keys) < n - n_updates:
        name = fake.name()
        if name in seen:
            continue
        seen.add(name)
        names.append(name)
        for rel in rng.choice(list(RELATIONS), size=int(rng.integers(2, 5)), replace=False):
            keys.append((name, str(rel)))
    keys = keys[: n - n_updates]
    base_days = np.sort(rng.integers(0, HORIZON_DAYS - MIN_UPDATE_GAP, size=len(keys)))
    order = rng.permutation(len(keys))
    facts = []
    for i, k in enumerate(order):
        person, rel = keys[k]
        facts.append(_fact(fake, person, rel, int(base_days[i])))
    mutable = [f for f in facts if RELATIONS[f.relation][2]]
    for f in rng.choice(len(mutable), size=min(n_updates, len(mutable)), replace=False):
        old = mutable[int(f)]
        day = int(rng.integers(old.day + MIN_UPDATE_GAP, HORIZON_DAYS))
        facts.append(_fact(fake, old.person, old.relation, day))
    return sorted(facts, key=lambda f: f.day)


def _fact(fake: Faker, person: str, rel: str, day: int) -> Fact:
    template, provider, _, _ = RELATIONS[rel]
    value = _value(fake, provider)
    return Fact(template.format(p=person, v=value), day, person, rel, value)


def current(facts: list[Fact], person: str, rel: str, day: int | None) -> int:
    """Index of the version of (person, rel) true on `day` (None: the latest)."""
    best = -1
    for i, f in enumerate(facts):
        match = f.person == person and f.relation == rel and (day is None or f.day <= day)
        if match and (best < 0 or f.day >= facts[best].day):
            best = i
    return best


def all_questions(facts: list[Fact]) -> list[Question]:
    """Every template about every fact, undated (for current facts) and dated (for all)."""
    out = []
    for i, f in enumerate(facts):
        latest = current(facts, f.person, f.relation, None) == i
        for template in RELATIONS[f.relation][3]:
            body = template.format(p=f.person)
            if latest:
                out.append(Question(body, None, i, f.value))
            dated = DATED_PREFIX.format(d=date_text(f.day)) + body[0].lower() + body[1:]
            if body.startswith(f.person):  # keep the name's capitals
                dated = DATED_PREFIX.format(d=date_text(f.day)) + body
            out.append(Question(dated, f.day, i, f.value))
    return out


def sample_questions(facts: list[Fact], n: int, seed: int) -> list[Question]:
    """n distinct questions (all of them if there are fewer)."""
    qs = all_questions(facts)
    if len(qs) <= n:
        return qs
    rng = np.random.default_rng(seed + 7919)
    return [qs[i] for i in sorted(rng.choice(len(qs), size=n, replace=False))]


_PATTERNS = {
    rel: re.compile(
        "^"
        + re.escape(t)
        .replace(re.escape("{p}"), "(?P<p>.+?)")
        .replace(re.escape("{v}"), "(?P<v>.+)")
        + "$"
    )
    for rel, (t, _, _, _) in RELATIONS.items()
}


def extract_answer(text: str) -> str | None:
    """The value slot of a stored fact's text, read back through the fact templates."""
    for pattern in _PATTERNS.values():
        m = pattern.match(text)
        if m:
            return m["v"]
    return None
