"""Which skills a task's prompt shows, and the ``get_skill(name)`` text behind them.

Only skills of kind "skill" are ever shown (evaluators are the judge's). The
prompt lists the chosen few by name and description; the model loads a body on
demand with ``get_skill(name)``, so an unused skill costs one line of prompt.

Selection, in order:

1. **Mentions.** A skill the task names (its name as a whole word, or ``$name``
   or ``/name``, case-insensitively) is always selected, first, in the order
   of mention, on top of the ``k`` ranked ones, even when it is not eligible.
2. **Eligibility.** Otherwise a skill is a candidate only if the model may
   invoke it (not Claude Code's ``disable-model-invocation: true``) and its
   OpenClaw requirements (programs, environment variables, platform) are met.
3. **Similarity** of the task to ``"<name>: <description>"``: the cosine of
   ``embed`` vectors when an embedder is given, else the Jaccard overlap of
   their word sets (lowercased, stop words dropped, crude suffix stemming,
   hyphenated names split). A candidate below the floor
   (:data:`COSINE_FLOOR` or :data:`JACCARD_FLOOR`, or ``min_similarity``) is
   not selected, however effective it has been.
4. **Rank** = ``similarity * (0.5 + shrunk)`` where
   ``shrunk = (mean * n + PRIOR * m) / (n + m)`` with ``PRIOR = 0.5`` and
   ``m = 3``: the recorded mean score (0..1) over ``n`` tasks, pulled towards
   0.5 by three imaginary average tasks, so one lucky or unlucky task moves it
   little and a long record moves it fully. An unrecorded skill counts as 0.5
   (factor 1.0); a perfect long record scales similarity by up to 1.5 and a
   useless one down to 0.5. Multiplying keeps similarity in charge (a skill
   three times as similar wins regardless of record), makes the record decide
   between equally similar skills, and works the same whatever the scale of
   the similarity (cosine or Jaccard). Ties go to the higher similarity, then
   the name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shoal.skills.catalog import Skill, SkillCatalog

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

PRIOR = 0.5
"""The effectiveness assumed for a skill with no record."""

PRIOR_STRENGTH = 3
"""How many imaginary tasks at :data:`PRIOR` every record is shrunk with."""

COSINE_FLOOR = 0.2
"""Least cosine similarity (with ``embed``) for a skill to be selected unmentioned."""

JACCARD_FLOOR = 0.05
"""Least word-set overlap (without ``embed``) for a skill to be selected unmentioned."""

_STOPWORD_TEXT = """a about after all also an and any are as at be been before but by can could
    do does done for from get had has have how i if in into is it its may me might more must my no
    not of on or our out over should so some such than that the their them then there these
    they this those to up use used using was we were what when where which while who will
    with would you your"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ing", "ed", "es", "s")


@dataclass(frozen=True)
class SkillMatch:
    """A candidate skill and why it ranks where it does."""

    skill: Skill
    similarity: float
    """Cosine (with an embedder) or Jaccard similarity of the task and the skill."""

    effectiveness: float
    """The shrunk mean score, 0..1 (:data:`PRIOR` with no record)."""

    score: float
    """``similarity * (0.5 + effectiveness)``: what candidates are ranked by."""


def select_skills(
    task: str,
    catalog: SkillCatalog,
    *,
    effectiveness: Mapping[str, tuple[float, int]] | None = None,
    embed: Embed | None = None,
    k: int = 3,
    min_similarity: float | None = None,
) -> list[Skill]:
    """The skills to show for ``task``: those it mentions, then up to ``k`` best candidates.

    ``effectiveness`` maps a skill's name to (mean score 0..1, number of tasks).
    ``embed`` turns texts into vectors (one call, the task first); errors it
    raises are the caller's. See the module docstring for the ranking.
    """
    mentioned = mentioned_skills(task, catalog)
    taken = {s.name for s in mentioned}
    candidates = [s for s in eligible_skills(catalog) if s.name not in taken]
    floor = min_similarity
    if floor is None:
        floor = COSINE_FLOOR if embed is not None else JACCARD_FLOOR
    ranked = rank_skills(task, candidates, effectiveness=effectiveness, embed=embed)
    chosen = [m.skill for m in ranked if m.similarity >= floor and m.similarity > 0][: max(k, 0)]
    return [*mentioned, *chosen]


def rank_skills(
    task: str,
    skills: Sequence[Skill],
    *,
    effectiveness: Mapping[str, tuple[float, int]] | None = None,
    embed: Embed | None = None,
) -> list[SkillMatch]:
    """Every skill given, best first, with its similarity, shrunk effectiveness and score."""
    if not skills:
        return []
    docs = [f"{s.name}: {s.description}" for s in skills]
    if embed is not None:
        vectors = list(embed([task, *docs]))
        if len(vectors) != len(docs) + 1:
            raise ValueError(f"embed returned {len(vectors)} vectors for {len(docs) + 1} texts")
        sims = [cosine(vectors[0], v) for v in vectors[1:]]
    else:
        words = word_set(task)
        sims = [jaccard(words, word_set(doc)) for doc in docs]
    records = effectiveness or {}
    matches = []
    for skill, sim in zip(skills, sims, strict=True):
        mean, samples = records.get(skill.name, (PRIOR, 0))
        shrunk = shrunk_mean(mean, samples)
        matches.append(SkillMatch(skill, sim, shrunk, sim * (0.5 + shrunk)))
    return sorted(matches, key=lambda m: (-m.score, -m.similarity, m.skill.name))


def mentioned_skills(task: str, catalog: SkillCatalog) -> list[Skill]:
    """Skills of kind "skill" that ``task`` names, in order of first mention."""
    found: list[tuple[int, Skill]] = []
    for skill in catalog.of_kind("skill"):
        pattern = rf"(?<![\w-])[$/]?{re.escape(skill.name)}(?![\w-])"
        hit = re.search(pattern, task, flags=re.IGNORECASE)
        if hit is not None:
            found.append((hit.start(), skill))
    return [skill for _, skill in sorted(found, key=lambda f: (f[0], f[1].name))]


def eligible_skills(catalog: SkillCatalog) -> list[Skill]:
    """Skills that may be selected without a mention: kind "skill", invocable, requirements met."""
    return [s for s in catalog.of_kind("skill") if s.model_invocable and not s.requires.missing()]


def shrunk_mean(
    mean: float, samples: int, prior: float = PRIOR, strength: int = PRIOR_STRENGTH
) -> float:
    """``(mean * n + prior * m) / (n + m)``: the mean pulled towards ``prior`` by ``m`` samples.

    The mean is clamped to 0..1; a non-finite mean or a non-positive count is no record.
    """
    if not math.isfinite(mean) or samples <= 0:
        return prior
    mean = min(max(mean, 0.0), 1.0)
    return (mean * samples + prior * strength) / (samples + strength)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is zero or the lengths differ."""
    if len(a) != len(b):
        return 0.0
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0.0 or not math.isfinite(norm):
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm


def jaccard(a: set[str], b: set[str]) -> float:
    """Size of the intersection over size of the union; 0.0 for two empty sets."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def word_set(text: str) -> set[str]:
    """The content words of ``text``, lowercased and crudely stemmed ("failing" -> "fail")."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1}


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def prompt_block(skills: Sequence[Skill]) -> str:
    """The prompt's list of skills by name and description; "" when there are none."""
    if not skills:
        return ""
    lines = [
        "Skills (instructions for particular kinds of work). Only their descriptions are "
        "shown here: when one fits the task, call get_skill(name) to load its full "
        "instructions before you start, and follow them.",
    ]
    lines += [f"- {s.name}: {s.description}" for s in skills]
    return "\n".join(lines)


def get_skill_text(catalog: SkillCatalog, name: str) -> str:
    """What ``get_skill(name)`` returns: the skill's instructions, or why there are none."""
    skill = catalog.get(name)
    if skill is None or skill.kind != "skill":
        known = ", ".join(s.name for s in catalog.of_kind("skill")) or "none"
        return f"no skill named {name.strip()!r}; known skills: {known}"
    header = f"Skill {skill.name} (its files are in {skill.directory})"
    return f"{header}\n\n{skill.body}" if skill.body else f"{header}\n\n(no instructions)"
