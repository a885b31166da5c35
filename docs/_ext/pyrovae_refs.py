"""Sphinx extension: the references of the pyrovae site, generated from the code.

At ``builder-inited`` it writes ``docs/_generated/``:

* ``api/*.rst`` -- one page per public namespace (``pyrovae`` and every sub-package or
  module that declares ``__all__``), one autodoc entry per name in ``__all__``; each
  object is documented once, under the module that defines it, and the other
  namespaces that re-export it link there.
* ``families.md`` -- every registered family (priors, likelihoods, guides, networks,
  contexts, objectives, schedules, model kinds...) with its ``Param`` declarations, read
  from :func:`pyrovae.runs.families.list_families` (what ``pyrovae families`` prints).
* ``spec.md`` -- every spec key, its type, default and bounds, from the same ``Param``
  declarations the spec is validated with.
* ``cli.md`` -- every subcommand's ``--help``, from the parser ``pyrovae`` runs.
* ``figures.md`` -- what each figure shows and how to read it, from
  :data:`pyrovae.plots.captions.CAPTIONS` (the captions a check's report carries).

It also fails the build (a warning, and the site is built with ``-W``) when a public
name has no docstring, and resolves references to re-exported names
(``pyrovae.fit`` -> ``pyrovae.training.trainer.fit``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

from sphinx.util import logging

logger = logging.getLogger(__name__)

GENERATED = "_generated"


# ----------------------------------------------------------------------------- API
def public_namespaces() -> list[str]:
    """``pyrovae`` and every module or sub-package of it that declares ``__all__``."""
    import pyrovae

    names = ["pyrovae"]
    for info in sorted(pkgutil.walk_packages(pyrovae.__path__, "pyrovae."), key=lambda i: i.name):
        mod = importlib.import_module(info.name)
        if "__all__" in vars(mod):
            names.append(info.name)
    return names


def canonical(namespace: str, name: str) -> tuple[str, str, str]:
    """``(directive, dotted path where it is documented, module)`` of ``namespace.name``."""
    mod = importlib.import_module(namespace)
    obj = getattr(mod, name)
    if inspect.ismodule(obj):
        return "module", obj.__name__, obj.__name__
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        return kind, f"{obj.__module__}.{obj.__qualname__}", obj.__module__
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function", f"{obj.__module__}.{obj.__qualname__}", obj.__module__
    # data: documented where it is defined (the top-level facade maps names to modules)
    home = getattr(mod, "_EXPORTS", {}).get(name, namespace)
    return "data", f"{home}.{name}", home


def public_names() -> dict[str, list[str]]:
    """``{namespace: sorted __all__}`` for every public namespace."""
    out = {}
    for ns in public_namespaces():
        mod = importlib.import_module(ns)
        out[ns] = sorted(mod.__all__)
    return out


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def write_api(outdir: Path) -> dict[str, str]:
    """Write the API pages; return ``{alias dotted path: canonical dotted path}``."""
    api = outdir / "api"
    api.mkdir(parents=True, exist_ok=True)
    names = public_names()
    # sub-packages first, the top-level facade last: the facade re-exports, it links
    order = [ns for ns in names if ns != "pyrovae"] + ["pyrovae"]
    documented: dict[str, str] = {}
    aliases: dict[str, str] = {}
    pages = []
    for ns in order:
        mod = importlib.import_module(ns)
        doc = (inspect.getdoc(mod) or "").split("\n\n")[0]
        lines = [f".. _api-{ns}:\n", _title(f"``{ns}``"), f".. module:: {ns}\n   :no-index:\n",
                 doc + "\n" if doc else ""]
        table = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
                 "   * - name", "     - documented as"]
        body = []
        for name in names[ns]:
            directive, path, _ = canonical(ns, name)
            aliases[f"{ns}.{name}"] = path
            if directive == "module":
                table += [f"   * - ``{name}``", f"     - module :mod:`{path}`"]
                continue
            if path in documented:
                table += [f"   * - ``{name}``", f"     - :py:obj:`{path}` ({documented[path]})"]
                continue
            documented[path] = ns
            table += [f"   * - ``{name}``", f"     - :py:obj:`{path}`"]
            opts = ""
            if directive in ("class", "exception"):
                opts = "\n   :members:\n   :show-inheritance:"
            elif directive == "data":
                opts = "\n   :no-value:" if _is_object(path) else ""
            body.append(f".. auto{directive}:: {path}{opts}\n")
        lines += ["\n".join(table) + "\n", *body]
        (api / f"{ns}.rst").write_text("\n".join(lines), encoding="utf-8")
        pages.append(ns)
    index = [_title("API reference"),
             "Every name in ``pyrovae.__all__`` and in the ``__all__`` of each sub-package or "
             "module that declares one, generated from the code at build time.\n",
             ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {ns}" for ns in ["pyrovae", *[n for n in pages if n != "pyrovae"]]]
    (api / "index.rst").write_text("\n".join(index) + "\n", encoding="utf-8")
    return aliases


def _is_object(path: str) -> bool:
    mod, _, name = path.rpartition(".")
    value = getattr(importlib.import_module(mod), name)
    return not isinstance(value, (int, float, str, tuple, type(None)))


# ----------------------------------------------------------------------- families
def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def family_label(kind: str, name: str) -> str:
    """The anchor of a family in the families reference (``family-prior-mixture``)."""
    return f"family-{kind}-{name}".replace("_", "-")


def write_families(outdir: Path) -> None:
    from pyrovae.runs.families import list_families

    listing = list_families()
    out = ["# Families reference", "",
           "Every registered family, generated at build time from the registries' `Param` "
           "declarations (the same listing as `pyrovae families`). A family entry in a spec "
           "is `{family: NAME, **params}`; a bare name is `{family: NAME}`.", ""]
    for kind, families in listing.items():
        out += [f"## `{kind}`", ""]
        for name, info in families.items():
            out += [f"({family_label(kind, name)})=", f"### `{name}` ({kind})", "",
                    _md_cell(info["doc"]) or "(no description)", ""]
            if "estimator" in info:
                out += [f"Estimator in force: {_md_cell(info['estimator'])}", ""]
            if info["params"]:
                out += ["| parameter | type | default | meaning |", "|---|---|---|---|"]
                for pname, p in info["params"].items():
                    default = "required" if p["required"] else f"`{json.dumps(p['default'])}`"
                    out.append(f"| `{pname}` | {_md_cell(p['type'])} | {default} | "
                               f"{_md_cell(p['doc'])} |")
                out.append("")
            else:
                out += ["No parameters.", ""]
    (outdir / "families.md").write_text("\n".join(out), encoding="utf-8")


# --------------------------------------------------------------------------- spec
def _param_rows(params: dict[str, Any]) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, p in params.items():
        d = p.describe()
        default = "required" if d["required"] else f"`{json.dumps(d['default'])}`"
        rows.append(f"| `{key}` | {_md_cell(d['type'])} | {default} | {_md_cell(d['doc'])} |")
    return [*rows, ""]


def write_spec(outdir: Path) -> None:
    from pyrovae.model import spec as model_spec
    from pyrovae.runs import spec as run_spec

    out = ["# Spec reference", "",
           "Every key of a spec, generated at build time from the `Param` declarations "
           "`pyrovae.runs.spec.normalize_spec` validates with: its type (with its bounds), its "
           "default and its meaning. A spec is YAML, TOML or a dict; "
           "`pyrovae train --set key.path=value` overrides any key.", "",
           "## Top-level keys", ""]
    out += _param_rows(model_spec.TOP)
    out += ["## Families", "",
            "Each of these keys names a registered family (see the "
            "[families reference](families.md)) and its parameters.", "",
            "| key | default family |", "|---|---|"]
    for key, default in run_spec.FAMILY_DEFAULTS.items():
        out.append(f"| `{key}` | `{default}` |")
    out.append("")
    for section, params in run_spec.SECTIONS.items():
        out += [f"## `{section}`", ""]
        out += _param_rows(params)
    from pyrovae.runs import sections

    out += ["## The budget of `pyrovae check`", "",
            "Not a spec section: the options of `pyrovae check` (the flag `--ais-steps` is "
            "`ais_steps`), declared once by `pyrovae.runs.sections.CheckBudget`, whose "
            "fields also give `pyrovae.runs.check.check_vae` its defaults.", ""]
    out += _param_rows(sections.CHECK_PARAMS)
    bounds = {k: getattr(run_spec, k) for k in dir(run_spec) if k.startswith("MAX_")}
    if bounds:
        out += ["## Upper bounds", "", "Counts are also bounded above (a clear error, not an "
                "out-of-memory crash):", "", "| bound | value |", "|---|---|"]
        out += [f"| `{k}` | {v:,} |" for k, v in sorted(bounds.items())] + [""]
    (outdir / "spec.md").write_text("\n".join(out), encoding="utf-8")


# ---------------------------------------------------------------------------- CLI
def write_cli(outdir: Path) -> None:
    from pyrovae.cli import COMMANDS, build_parser

    top = build_parser([])
    out = ["# Command-line reference", "",
           "Generated at build time from the parser `pyrovae` runs "
           "(`pyrovae.cli.build_parser`). User errors print one line on stderr and exit "
           "with status 2.", "", "```text", top.format_help().rstrip(), "```", ""]
    for cmd, text in COMMANDS.items():
        parser = build_parser([cmd])
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        out += [f"## `pyrovae {cmd}`", "", text[:1].upper() + text[1:] + ".", "", "```text",
                sub.choices[cmd].format_help().rstrip(), "```", ""]
    (outdir / "cli.md").write_text("\n".join(out), encoding="utf-8")


# ------------------------------------------------------------------------ figures
def write_figures(outdir: Path) -> None:
    from pyrovae.plots.captions import CAPTIONS

    out = ["# Reading the figures", "",
           "What each figure that `pyrovae train` and `pyrovae check` write shows and how to "
           "read it. Generated at build time from `pyrovae.plots.captions.CAPTIONS`, the "
           "same captions a check writes into its `report.json` (`captions`) and a training "
           "run into `figures/captions.json` beside its figures.", "",
           "| figure (file) | what it shows, how to read it |", "| --- | --- |"]
    out += [f"| `{name}.png` | {_md_cell(text)} |" for name, text in CAPTIONS.items()]
    (outdir / "figures.md").write_text("\n".join(out) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------ hooks
def generate(app) -> None:
    outdir = Path(app.srcdir) / GENERATED
    outdir.mkdir(exist_ok=True)
    app.env.pyrovae_aliases = write_api(outdir)  # type: ignore[attr-defined]
    write_families(outdir)
    write_spec(outdir)
    write_cli(outdir)
    write_figures(outdir)


def check_docstring(app, what, name, obj, options, lines) -> None:
    """A public object without a docstring fails the build."""
    short = name.rpartition(".")[2]
    if short.startswith("_") or what in ("module", "attribute", "data", "property"):
        return
    if not any(line.strip() for line in lines):
        logger.warning(f"public {what} {name} has no docstring", type="pyrovae",
                       subtype="docstring")


def _lookup(dotted: str) -> Any:
    """The object at ``dotted`` (a module, or attributes below one), or raise LookupError."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise LookupError(dotted)


def _home(obj: Any) -> str | None:
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


def resolve_alias(app, env, node, contnode):
    """Resolve a reference to a pyrovae object that is not documented under that name.

    A re-export (``pyrovae.fit``) or a name imported into the module being documented
    (``History`` in ``pyrovae.training.trainer``) links to where the object is
    documented; a pyrovae object that imports but has no page of its own (an internal
    module or class) is shown as code without a link.  A name that does not import is
    left unresolved: with ``-n -W`` a stale module path fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    for dotted in candidates:
        if not dotted.startswith("pyrovae"):
            continue
        try:
            obj = _lookup(dotted)
        except LookupError:
            continue
        for path in dict.fromkeys(p for p in (_home(obj), dotted) if p):
            for role in ("obj", "class", "func", "exc", "data", "mod", "meth", "attr"):
                ref = domain.resolve_xref(env, node.get("refdoc"), app.builder, role, path,
                                          node, contnode)
                if ref is not None:
                    return ref
        return contnode
    return None


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", check_docstring)
    app.connect("missing-reference", resolve_alias)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["canonical", "family_label", "public_names", "setup"]
