"""npuenv: the command line over the project's libraries."""
