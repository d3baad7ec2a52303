"""A synthetic encyclopedia world where search is provably needed (the embedded default task).

Everything is invented from a seed: syllable-built names, people born in cities in given years,
organizations founded by people, works created by people. Each entity gets encyclopedia-style
passages in varied phrasings; people who share a surname (or a city name with a similar stem) act as
distractors. Questions come in three kinds: ``1hop`` (one fact), ``2hop`` (a fact about the entity a
first fact names: "In which city was the founder of X born?") and ``compare`` (who was born earlier).
A model's parametric knowledge cannot answer them; BM25 over the corpus can find every hop, because
names are distinctive tokens. Each question carries a gold search trajectory (the queries a good
agent would issue) for an SFT warm start. Splits are assigned by the question's subject entity, so
train, dev and test never ask about the same entity.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from searchrl.types import Passage, QAExample
from searchrl.utils import atomic_dir

Size = Literal["tiny", "small", "medium", "large"]
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"cities": 12, "people": 60, "orgs": 24, "works": 24},
    "small": {"cities": 40, "people": 240, "orgs": 100, "works": 100},
    "medium": {"cities": 120, "people": 1200, "orgs": 500, "works": 500},
    "large": {"cities": 400, "people": 6000, "orgs": 2500, "works": 2500},
}
SPLITS = ("train", "dev", "test")
DEFAULT_WORLD = {"seed": 0, "size": "small"}

_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kl",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "w",
    "z",
    "sh",
    "ch",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ia"]
_CODAS = ["", "n", "r", "l", "s", "th", "m", "nd", "rk", "x"]
_OCCUPATIONS = [
    "painter",
    "engineer",
    "botanist",
    "cartographer",
    "composer",
    "chemist",
    "sculptor",
    "historian",
    "architect",
    "astronomer",
    "weaver",
    "poet",
]
_ORG_KINDS = ["Company", "Guild", "Institute", "Works", "Foundry", "Society", "Press", "Observatory"]
_WORK_KINDS = ["novel", "symphony", "atlas", "treatise", "opera", "mural", "poem cycle", "field guide"]


@dataclass(frozen=True)
class Gold:
    """The searches a good agent issues for a question, and the answer it then gives."""

    queries: tuple[str, ...]
    answer: str
    passage_ids: tuple[str, ...]


@dataclass
class World:
    seed: int
    size: str
    passages: list[Passage]
    questions: dict[str, list[QAExample]]
    gold: dict[str, Gold] = field(default_factory=dict)


@dataclass
class _Person:
    name: str
    city: str
    year: int
    job: str


def _word(rng: random.Random, parts: int) -> str:
    s = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(parts))
    return s.capitalize()


def _unique(rng: random.Random, used: set[str], make: object) -> str:
    for _ in range(1000):
        name = make()  # type: ignore[operator]
        if name not in used:
            used.add(name)
            return str(name)
    raise RuntimeError("name space exhausted; use a smaller world")


def _split_of(key: str, seed: int) -> str:
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < 0.7 else "dev" if h < 0.8 else "test"


def generate_world(seed: int = 0, size: Size = "small") -> World:
    """Build the world deterministically from ``seed`` (same seed and size, same bytes)."""
    if size not in SIZES:
        raise ValueError(f"unknown world size '{size}'; valid: {', '.join(SIZES)}")
    rng = random.Random(seed)
    n = SIZES[size]
    used: set[str] = set()
    cities = [_unique(rng, used, lambda: _word(rng, 2)) for _ in range(n["cities"])]
    surnames = [_unique(rng, used, lambda: _word(rng, 2)) for _ in range(max(4, n["people"] // 3))]
    people: list[_Person] = []
    for _ in range(n["people"]):
        name = _unique(rng, used, lambda: f"{_word(rng, rng.choice([1, 2]))} {rng.choice(surnames)}")
        people.append(_Person(name, rng.choice(cities), rng.randint(1700, 1990), rng.choice(_OCCUPATIONS)))
    orgs = [
        (
            _unique(rng, used, lambda: f"{_word(rng, 2)} {rng.choice(_ORG_KINDS)}"),
            rng.choice(people),
            rng.randint(1750, 2015),
            rng.choice(cities),
        )
        for _ in range(n["orgs"])
    ]
    works = [
        (
            _unique(
                rng,
                used,
                lambda: f"The {_word(rng, 2)} {rng.choice(['Letters', 'Tides', 'Gardens', 'Hours', 'Lanterns'])}",
            ),
            rng.choice(people),
            rng.choice(_WORK_KINDS),
        )
        for _ in range(n["works"])
    ]
    passages, pid_of = _passages(rng, cities, people, orgs, works)
    questions, gold = _questions(rng, seed, people, orgs, works, pid_of)
    return World(seed, size, passages, questions, gold)


def _passages(
    rng: random.Random, cities: list[str], people: list[_Person], orgs: list, works: list
) -> tuple[list[Passage], dict[str, str]]:
    out: list[Passage] = []
    pid_of: dict[str, str] = {}

    def add(title: str, text: str) -> None:
        pid = f"w{len(out)}"
        pid_of.setdefault(title, pid)
        out.append(Passage(pid, title, text))

    for c in cities:
        add(
            c,
            rng.choice(
                [
                    f"{c} is a river town known for its covered markets.",
                    f"{c} is a hill city with an old stone bridge and a spring fair.",
                ]
            ),
        )
    for p in people:
        first = p.name.split()[0]
        add(
            p.name,
            rng.choice(
                [
                    f"{p.name} ({p.year}) was a {p.job} born in {p.city}.",
                    f"Born in {p.city} in {p.year}, {p.name} became a well-known {p.job}.",
                    f"{p.name} was a {p.job}. {first} was born in the city of {p.city} in the year {p.year}.",
                ]
            ),
        )
    for name, founder, year, hq in orgs:
        add(
            name,
            rng.choice(
                [
                    f"The {name} was founded by {founder.name} in {year}. It is based in {hq}.",
                    f"{founder.name} founded the {name} in {year}; its main office is in {hq}.",
                    f"Based in {hq}, the {name} was established in {year} by {founder.name}.",
                ]
            ),
        )
    for name, creator, kind in works:
        add(
            name,
            rng.choice(
                [f"{name} is a {kind} written by {creator.name}.", f"{creator.name} is the author of {name}, a {kind}."]
            ),
        )
    return out, pid_of


def _questions(
    rng: random.Random, seed: int, people: list[_Person], orgs: list, works: list, pid_of: dict[str, str]
) -> tuple[dict[str, list[QAExample]], dict[str, Gold]]:
    qs: dict[str, list[QAExample]] = {s: [] for s in SPLITS}
    gold: dict[str, Gold] = {}

    def add(
        kind: str,
        subject: str,
        question: str,
        answer: str,
        queries: tuple[str, ...],
        titles: tuple[str, ...],
        aliases: tuple[str, ...] = (),
    ) -> None:
        split = _split_of(subject, seed)
        qid = f"world/{kind}-{len(gold)}"
        qs[split].append(
            QAExample(
                qid,
                question,
                (answer, *aliases),
                "world",
                tuple(pid_of[t] for t in titles),
                {"type": kind, "split": split, "subject": subject},
            )
        )
        gold[qid] = Gold(queries, answer, tuple(pid_of[t] for t in titles))

    for p in people:
        q = rng.choice(["In which city was {} born?", "Where was {} born?", "What is the birthplace of {}?"])
        add("1hop", p.name, q.format(p.name), p.city, (f"{p.name} born",), (p.name,))
    for name, founder, _, _ in orgs:
        q = rng.choice(["Who founded the {}?", "Who was the founder of the {}?"])
        add("1hop", name, q.format(name), founder.name, (f"{name} founder",), (name,))
        q2 = rng.choice(
            [
                "In which city was the founder of the {} born?",
                "Where was the person who founded the {} born?",
                "What is the birthplace of the founder of the {}?",
            ]
        )
        add(
            "2hop",
            name,
            q2.format(name),
            founder.city,
            (f"{name} founder", f"{founder.name} born"),
            (name, founder.name),
        )
    for name, creator, _kind in works:
        q2 = rng.choice(["In which city was the author of {} born?", "Where was the writer of {} born?"])
        add(
            "2hop",
            name,
            q2.format(name),
            creator.city,
            (f"{name} author", f"{creator.name} born"),
            (name, creator.name),
        )
    for i in range(0, len(people) - 1, 2):
        a, b = people[i], people[i + 1]
        if a.year == b.year or _split_of(a.name, seed) != _split_of(b.name, seed):
            continue
        first = a if a.year < b.year else b
        add(
            "compare",
            a.name,
            f"Who was born earlier, {a.name} or {b.name}?",
            first.name,
            (f"{a.name} born", f"{b.name} born"),
            (a.name, b.name),
        )
    return qs, gold


def default_world() -> World:
    """The bundled default world (generated on use; deterministic, well under a second)."""
    return generate_world(DEFAULT_WORLD["seed"], DEFAULT_WORLD["size"])  # type: ignore[arg-type]


def save_world(world: World, out_dir: str | Path) -> Path:
    """Write corpus.jsonl (Search-R1 format), questions_<split>.jsonl, gold.jsonl and manifest.json."""
    with atomic_dir(out_dir) as tmp:
        (tmp / "corpus.jsonl").write_text(
            "".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in world.passages)
        )
        for split, exs in world.questions.items():
            (tmp / f"questions_{split}.jsonl").write_text(
                "".join(
                    json.dumps(
                        {
                            "id": e.id,
                            "question": e.question,
                            "golden_answers": list(e.answers),
                            "supporting_ids": list(e.supporting_ids),
                            "metadata": e.metadata,
                        }
                    )
                    + "\n"
                    for e in exs
                )
            )
        (tmp / "gold.jsonl").write_text(
            "".join(
                json.dumps(
                    {"id": k, "queries": list(g.queries), "answer": g.answer, "passage_ids": list(g.passage_ids)}
                )
                + "\n"
                for k, g in world.gold.items()
            )
        )
        counts = {s: len(v) for s, v in world.questions.items()}
        (tmp / "manifest.json").write_text(
            json.dumps(
                {"seed": world.seed, "size": world.size, "passages": len(world.passages), "questions": counts}, indent=2
            )
        )
    return Path(out_dir)
