"""Run a Python script with the eggs of a buildout script (zc.recipe.egg), as ``__main__``.

    python -c SOURCE BIN_SCRIPT SCRIPT [ARGS...]

For sites whose instance script has no ``run`` command (Zope's has): the interpreter is
the one in BIN_SCRIPT's first line, and ``sys.path`` gets the paths BIN_SCRIPT puts first
(its ``sys.path[0:0] = [...]``), so the script imports what the instance imports.
"""
import ast
import os
import runpy
import sys


def egg_paths(text):
    """The literal list a buildout script prepends to ``sys.path``."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Subscript) and ast.unparse(t.value) == "sys.path" for t in node.targets):
            return [str(path) for path in ast.literal_eval(node.value)]
    return None


def main(argv):
    bin_script, script, *args = argv
    with open(bin_script) as handle:
        paths = egg_paths(handle.read())
    if paths is None:
        sys.exit(f"{bin_script} sets no literal sys.path (a buildout with relative-paths?): "
                 f"cannot take its eggs")
    sys.path[0:0] = [os.path.dirname(os.path.abspath(script)), *paths]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
