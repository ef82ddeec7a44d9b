"""The package as others install it: a wheel and the editable install each expose only `userstats`.

The wheel is built from a copy of the source (so no build/ lands in the checkout) as pip builds
any sdist (an isolated build environment), installed with --no-deps into a fresh venv whose
dependencies come from the .venv's site-packages through a .pth line (which, unlike the .venv's
own site directory, does not run the editable install's finder), and run from a directory with
no source folders in it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from userstats import docs

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("shared", "ingest", "query", "sim", "launcher")
SOURCE = ("pyproject.toml", "README.md", "userstats", *FOLDERS)


def _run(cmd: list[str], cwd: Path) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=240)
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out.stdout


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(tmp / "dist"), "."], src)
    (wheel,) = (tmp / "dist").glob("userstats-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).strip()
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site), str(wheel)], tmp)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_wheel_holds_one_package_with_its_pages_and_docs_runs_from_it(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"userstats", "userstats-0.1.0.dist-info"}, tops
    for folder in ("userstats/query/templates/", "userstats/query/static/", "userstats/query/static/vendor/"):
        shipped = [n for n in names if n.startswith(folder) and "/" not in n[len(folder) :]]
        on_disk = [
            p for p in (ROOT / "query" / folder.removeprefix("userstats/query/")).iterdir() if p.is_file()
        ]
        assert shipped and len(shipped) == len(on_disk), (folder, shipped, on_disk)
    for folder in FOLDERS:
        assert f"userstats/{folder}/__init__.py" in names
        for init in (ROOT / folder).rglob("__init__.py"):  # subpackages, which pyproject must list
            assert f"userstats/{init.relative_to(ROOT).as_posix()}" in names, init

    python = _venv_with(wheel, tmp_path)
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).strip()
    )
    added = {p.name for p in site.iterdir()} - {"deps.pth", "bin"}  # bin/: --target's console scripts
    assert added == {"userstats", "userstats-0.1.0.dist-info"}, added
    assert {"userstats-query", "userstats-ingest", "userstats-ask"} <= {
        p.name for p in (site / "bin").iterdir()
    }
    where = _run(
        [str(python), "-c", "import userstats.query, userstats.shared; print(userstats.query.__file__)"],
        tmp_path,
    )
    assert Path(where.strip()).is_relative_to(site), where

    reference = _run([str(python), "-m", "userstats.docs"], tmp_path)
    assert reference == docs.generate()
    assert "### `user.stats`" in reference
    copy = tmp_path / "QUERY_ENDPOINTS.md"
    shutil.copy2(ROOT / "QUERY_ENDPOINTS.md", copy)
    _run([str(python), "-m", "userstats.docs", "--check", "--file", str(copy)], tmp_path)
    listing = (
        "from importlib import resources; "
        "print(sorted(p.name for p in resources.files('userstats.query').joinpath('templates').iterdir()))"
    )
    pages = _run([str(python), "-c", listing], tmp_path)
    assert pages.strip() == str(sorted(p.name for p in (ROOT / "query" / "templates").iterdir()))


def test_editable_install_exposes_only_userstats(tmp_path: Path) -> None:
    probe = (
        "import importlib.util, sys\n"
        f"print([n for n in {FOLDERS!r} if importlib.util.find_spec(n) is not None])\n"
        "finders = [f for f in sys.meta_path if getattr(f, '__module__', '').startswith('__editable__')]\n"
        "mapping = sys.modules[finders[0].__module__].MAPPING if finders else {}\n"
        "print(sorted({k.split('.')[0] for k in mapping}))\n"
        "import userstats.shared; print(userstats.shared.__file__)\n"
    )
    found, tops, where = _run([sys.executable, "-c", probe], tmp_path).splitlines()
    assert found == "[]", found
    assert tops == "['userstats']", tops
    assert Path(where) == ROOT / "shared" / "__init__.py"
