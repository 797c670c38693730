"""The clone's motion: a library of its own footage (library), and a path through it under new speech (plan)."""
