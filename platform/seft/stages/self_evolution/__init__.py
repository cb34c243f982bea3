"""The stages of SELF and EVOLVE (seft.recipes.self_evolution), after bootstrap and prepare."""
