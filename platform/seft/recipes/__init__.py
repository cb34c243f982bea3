"""Recipes: ordered lists of stages built on the same parts (`recipe:` in the spec)."""

from seft.recipes import seft as _seft

RECIPES = {"seft": _seft.stages}


def stages_for(spec):
    return RECIPES[spec.recipe](spec)
