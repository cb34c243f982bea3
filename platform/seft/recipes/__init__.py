"""Recipes: ordered lists of stages built on the same parts (`recipe:` in the spec)."""

from seft.recipes import seft as _seft
from seft.recipes import self_evolution as _self_evolution

RECIPES = {"seft": _seft.stages, "self": _self_evolution.stages, "evolve": _self_evolution.stages}


def stages_for(spec):
    return RECIPES[spec.recipe](spec)
