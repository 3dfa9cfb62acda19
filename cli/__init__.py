"""rdet's command line: a thin Typer layer over `zoo` and `retinanet`."""
