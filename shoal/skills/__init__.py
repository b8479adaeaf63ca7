"""Skills: SKILL.md files with YAML frontmatter and markdown instructions.

- ``shoal.skills.frontmatter``: split a SKILL.md into its frontmatter and body.
- ``shoal.skills.rubrics``: evaluator skills, the judge's rubrics (bundled ones
  under ``shoal/skills/bundled/<name>/SKILL.md``).
"""

from shoal.skills.rubrics import Dimension, Rubric, SkillWarning, load_rubric

__all__ = ["Dimension", "Rubric", "SkillWarning", "load_rubric"]
