"""Layering rules from STYLE.md, checked: uprm/ and annotations/ never need Gradio; ui/ is the top."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts))
    return out


def test_core_packages_import_without_gradio():
    mods = _modules("uprm") + _modules("annotations")
    code = ("import sys, importlib; sys.modules['gradio'] = None\n"
            f"for m in {mods!r}: importlib.import_module(m)\nprint(len({mods!r}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_core_packages_never_import_ui():
    for package in ("uprm", "annotations"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert not name.startswith(("ui", "gradio")), f"{path} imports {name}"


def test_every_cli_command_has_help_with_an_example():
    from uprm.__main__ import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(COMMANDS), "every command module must exist and register itself"
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "python -m uprm" in text, f"`{name}` help shows no example"


def test_app_help_and_bad_auth_message():
    res = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for option in ("--host", "--port", "--db", "--model", "--sam2-checkpoint", "--auth", "--share"):
        assert option in res.stdout
    res = subprocess.run([sys.executable, "app.py", "--auth", "nopassword", "--port", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "expected user:password" in res.stderr
    assert "Traceback" not in res.stderr
