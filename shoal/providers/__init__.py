"""Model providers: which models exist (litellm's list, servers' own lists), which to pick
when nobody said, and whether a name is a typo.

Kept out of :mod:`shoal.llm`, whose package imports the model client: the CLI checks a
model name on the way to every task and must not pay for that.
"""
